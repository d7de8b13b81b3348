#!/usr/bin/env python3
"""Runs the guides in docs/ against a local stack (started by scripts/test-docs.sh).

Every fenced block of a guide is either run or checked, by its info string:

  ```sh                  run with bash -euo pipefail; the blocks of one guide run in order
                         in one shell, with BROKER (the broker's URL) and JWT (a token of
                         the development issuer, standing in for the CI's or the portal's)
                         set, HOME an empty directory of its own
  ```yaml github-workflow   parsed and checked for shape, then its steps' `run:` scripts run
                         as a GitHub runner would: the OIDC token request answered by a
                         stand-in endpoint that mints a JWT for the audience asked, the
                         GITHUB_ENV and GITHUB_OUTPUT files honoured, and the log checked
                         for `::add-mask::` covering every secret it would otherwise show
  ```yaml gitlab-ci      parsed and checked for shape, then each job's `before_script`,
                         `script` and `after_script` run with its `id_tokens` minted for
                         their `aud`
  ```yaml kubernetes     validated by kubernetes-validate --strict; the shell scripts of a
                         CronJob's containers run too, its volume mounts mapped to
                         directories here
  ```json docker-config  parsed: a ~/.docker/config.json, credHelpers naming the client
  ```toml                a piece of the broker's config: `check-config` must accept it
                         after the guide's earlier toml blocks, with [database] and [audit]
                         (and an issuer, if there is none) added
  ```json | text | console | html | js   parsed (json) or shown only

Whatever the kind, no block may send anything to a plain http:// URL other than a loopback
address (a JWT or a password would cross the network in the clear), and every image a
manifest or a CI file runs from a public registry is pinned by digest. A CI job that runs `docker login` must log
out in a step that runs whatever happened before it (GitHub: `if: always()`; GitLab:
`after_script`), since a self-hosted runner's home directory outlives the job. A GitLab job
with a `docker:*dind` service must reach it as that image listens: TLS on 2376 with the
client's certificates, or 2375 with TLS turned off explicitly (`DOCKER_TLS_CERTDIR: ""`).

Commands that cannot run here are stand-ins that record their arguments and input, which
are then checked: `docker` (login: the password on stdin must be the one the broker
issues, the host an ECR registry, and a `credHelpers` helper for the host is given it
with `store`, as docker does; logout runs the helper's `erase`; pull and push: docker's
config must hold that password for the image's registry, through `auths` or a
`credHelpers` helper, which is run),
`kubectl` (apply -f: every document is validated, and a dockerconfigjson Secret must hold
the issued password), and `apk add` (the packages must be commands here).

The client binary is built as the guides say and checked to need no shared library but the
C library's (the guides promise one binary that needs nothing else); the guides then run it.

A block that needs something this tree does not build yet (an endpoint absent from
openapi.yaml, the client binary) is skipped and reported as such.
"""

import argparse
import base64
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer, BaseHTTPRequestHandler
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
VENV_BIN = Path(sys.executable).parent
CLIENT_BINARY = "docker-credential-ecr-token-broker"
# The shared libraries of the C library itself: all the client binary may need.
C_LIBRARY = {"linux-vdso.so.1", "libc.so.6", "libm.so.6", "libgcc_s.so.1", "ld-linux-x86-64.so.2"}
# A plain-text URL and its host; only loopback hosts may be spoken to in the clear.
PLAIN_HTTP = re.compile(r"http://(\[[^\]]*\]|[^/:\s\"'`)]+)")
LOOPBACK = re.compile(r"^(localhost|127(\.\d+){3}|\[::1\])$")
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
ECR_HOST = re.compile(r"^[0-9]{12}\.dkr\.ecr(-fips)?\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
# Endpoints the guides use that another part of the tree may not have built yet.
GATED_PATHS = ("/v1/ecr/login-password", "/v1/ecr/docker-config")
SHOWN_ONLY = {"text", "console", "html", "js", "javascript", "http"}
# What a config fragment in a guide needs around it to be a whole config for check-config.
CONFIG_BASE = """
[database]
url = "postgres://broker@db.internal/ecr_token_broker"

[audit]
fingerprint_key_id = "docs"
fingerprint_key = "0123456789abcdef0123456789abcdef"
chain_key = "fedcba9876543210fedcba9876543210"
"""
CONFIG_ISSUER = """
[[issuers]]
name = "docs"
issuer = "https://issuer.example.com"
jwks_uri = "https://issuer.example.com/jwks"
audiences = ["ecr-token-broker"]
algorithms = ["RS256"]
"""
# Seconds any one guide's commands may take: the stack is local, so this only bounds a hang.
RUN_TIMEOUT = 120


@dataclass
class Block:
    guide: Path
    line: int  # of the opening fence, 1-based
    lang: str
    kind: str
    text: str

    def where(self) -> str:
        return f"{self.guide.relative_to(REPO)}:{self.line}"


class Failure(Exception):
    pass


def blocks_of(guide: Path) -> list[Block]:
    found, lines, i = [], guide.read_text().splitlines(), 0
    while i < len(lines):
        fence = re.match(r"^(\s*)```(\S*)\s*(\S*)\s*$", lines[i])
        if not fence or not fence.group(2):
            i += 1
            continue
        indent, start, body = fence.group(1), i, []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1
        found.append(Block(guide, start + 1, fence.group(2), fence.group(3), "\n".join(body) + "\n"))
    return found


class Stack:
    """The local stack, and what the broker issues for the development issuer's tokens."""

    def __init__(self, args):
        self.broker = args.broker.rstrip("/")
        self.issuer_port = args.issuer_port
        self.issuer_state = args.issuer_state
        self.aws_proxy = args.aws_proxy.rstrip("/")
        self.minted: list[str] = []  # every JWT made here, kept out of what the test prints
        self.jwt = self.mint()
        token = self.issue()["authorizationData"][0]["authorizationToken"]
        user, _, self.password = base64.b64decode(token).decode().partition(":")
        assert user == "AWS" and self.password, "the broker's token is not AWS:<password>"
        spec = yaml.safe_load((REPO / "openapi.yaml").read_text())
        self.paths = set(spec.get("paths", {}))

    def mint(self, aud: str = "ecr-token-broker", claims: dict | None = None) -> str:
        command = [sys.executable, str(REPO / "scripts/dev_issuer.py"), "mint",
                   "--port", str(self.issuer_port), "--state-dir", self.issuer_state, "--aud", aud]
        for key, value in (claims or {}).items():
            command += ["--claim", f"{key}={value}"]
        jwt = subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()
        self.minted.append(jwt)
        return jwt

    def issue(self) -> dict:
        request = urllib.request.Request(
            f"{self.broker}/v1/ecr/authorization-token", method="POST", data=b"{}",
            headers={"Authorization": f"Bearer {self.jwt}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def aws_calls(self) -> int:
        with urllib.request.urlopen(f"{self.aws_proxy}/_proxy/calls", timeout=10) as response:
            return sum(json.load(response).values())


# --- the stand-ins for docker, kubectl and apk ------------------------------------------

STAND_IN = r'''#!{python}
"""Stand-in for {tool} in the docs test: records the call (scripts/test_docs.py)."""
import json, os, sys
args = sys.argv[1:]
record = {{"tool": "{tool}", "args": args, "cwd": os.getcwd()}}
config_path = os.path.join(os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker"), "config.json")
def helper_for(host):
    try:
        config = json.load(open(config_path))
    except FileNotFoundError:
        config = {{}}
    return config, config.get("credHelpers", {{}}).get(host) or config.get("credsStore")
if "{tool}" == "docker" and "--password-stdin" in args:
    record["stdin"] = sys.stdin.read()
    if not record["stdin"].strip():
        sys.exit("Error: the password on stdin is empty")
    if args[:1] == ["login"]:
        config, helper = helper_for(args[-1])
        if helper:
            # As docker does with a credential helper: the login is handed to its `store`.
            import subprocess
            login = json.dumps({{"ServerURL": args[-1], "Username": "AWS", "Secret": record["stdin"].strip()}})
            out = subprocess.run(["docker-credential-" + helper, "store"], input=login, text=True,
                                 capture_output=True)
            record["helper"] = {{"status": out.returncode, "stdout": out.stdout}}
            if out.returncode != 0:
                sys.exit("Error saving credentials: " + out.stdout.strip())
        else:
            # As docker does without a credential store: the login goes into config.json.
            import base64
            auth = base64.b64encode(("AWS:" + record["stdin"].strip()).encode()).decode()
            config.setdefault("auths", {{}})[args[-1]] = {{"auth": auth}}
            os.makedirs(os.path.dirname(config_path), exist_ok=True)
            with open(os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
                json.dump(config, f)
if "{tool}" == "docker" and args[:1] == ["logout"]:
    config, helper = helper_for(args[-1])
    if helper:
        import subprocess
        out = subprocess.run(["docker-credential-" + helper, "erase"], input=args[-1], text=True,
                             capture_output=True)
        if out.returncode != 0:
            sys.exit("Error: " + out.stdout.strip())
    elif args[-1] in config.get("auths", {{}}):
        del config["auths"][args[-1]]
        with open(os.open(config_path, os.O_WRONLY | os.O_TRUNC, 0o600), "w") as f:
            json.dump(config, f)
if "{tool}" == "kubectl" and args[:1] == ["apply"] and "-f" in args:
    source = args[args.index("-f") + 1]
    record["input"] = sys.stdin.read() if source == "-" else open(source).read()
if "{tool}" == "docker" and args[:1] in (["pull"], ["push"]):
    # What docker would send to the registry: the credential its config gives for the host.
    host = args[-1].split("/")[0]
    record["host"] = host
    config, helper = helper_for(host)
    if helper:
        import subprocess
        out = subprocess.run(["docker-credential-" + helper, "get"], input=host, text=True,
                             capture_output=True)
        record["helper"] = {{"status": out.returncode, "stdout": out.stdout}}
    elif host in config.get("auths", {{}}):
        record["auth"] = config["auths"][host].get("auth")
with open(os.environ["DOCS_TEST_RECORD"], "a") as f:
    f.write(json.dumps(record) + "\n")
'''


def install_stand_ins(bin_dir: Path) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    for tool in ("docker", "kubectl", "apk"):
        path = bin_dir / tool
        path.write_text(STAND_IN.format(python=sys.executable, tool=tool))
        path.chmod(0o755)


def kubernetes_validate(text: str, where: str) -> list[dict]:
    documents = [d for d in yaml.safe_load_all(text) if d]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(text)
        f.flush()
        out = subprocess.run([str(VENV_BIN / "kubernetes-validate"), "--strict", "--quiet", f.name],
                             capture_output=True, text=True)
    if out.returncode != 0:
        raise Failure(f"{where}: kubernetes-validate:\n{out.stdout}{out.stderr}")
    return documents


def check_one_binary(binary: Path) -> None:
    """The client needs no shared library but the C library's (no OpenSSL, no AWS CLI), and
    runs in an empty environment."""
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True)
    needed = {Path(line.split()[0]).name for line in out.stdout.splitlines() if line.strip()}
    if needed - C_LIBRARY:
        raise Failure(f"{binary} needs shared libraries beyond the C library's: "
                      f"{sorted(needed - C_LIBRARY)}")
    out = subprocess.run([str(binary), "version"], env={}, capture_output=True, text=True)
    if out.returncode != 0 or not out.stdout.startswith(CLIENT_BINARY):
        raise Failure(f"{binary} version, in an empty environment: {out.stdout}{out.stderr}")


def check_plain_http(text: str) -> None:
    """No URL in the clear but to this machine: a JWT or a password would travel in it."""
    for match in PLAIN_HTTP.finditer(text):
        if not LOOPBACK.match(match.group(1)):
            raise Failure(f"{match.group(0)} is plain http to another machine; use https")


def check_pinned(image: str, where: str) -> None:
    """An image of someone else's by tag can change under the guide's reader; by digest it
    cannot. The reader's own images (in an ECR registry) are theirs to name."""
    if not DIGEST.search(image) and not ECR_HOST.match(image.split("/")[0]):
        raise Failure(f"{where}: image {image} is not pinned by digest (IMAGE:TAG@sha256:...)")


def logs_in_and_out(scripts: list[str], cleanup: list[str], where: str) -> None:
    """A job that runs `docker login` logs out in `cleanup`, which runs whatever failed."""
    if any(re.search(r"\bdocker login\b", script) for script in scripts) and \
            not any(re.search(r"\bdocker logout\b", script) for script in cleanup):
        raise Failure(f"{where}: logs in to docker but never logs out in a step that always runs; "
                      "on a self-hosted runner the password would outlive the job")


def check_dind(job: dict, variables: dict, where: str) -> None:
    """docker:dind turns TLS on by default and listens on 2376; 2375 answers only when
    TLS is turned off explicitly."""
    services = [s if isinstance(s, str) else s.get("name", "") for s in job.get("services", [])]
    if not any(re.match(r"^(docker\.io/)?(library/)?docker:[^@]*dind", s) for s in services):
        return
    host = str(variables.get("DOCKER_HOST", ""))
    certdir = variables.get("DOCKER_TLS_CERTDIR")
    if host.endswith(":2375"):
        if certdir != "":
            raise Failure(f"{where}: DOCKER_HOST {host} without TLS needs DOCKER_TLS_CERTDIR: \"\" "
                          "(docker:dind turns TLS on and listens on 2376 otherwise)")
    elif host.endswith(":2376"):
        if not certdir or str(variables.get("DOCKER_TLS_VERIFY")) != "1" or not variables.get("DOCKER_CERT_PATH"):
            raise Failure(f"{where}: DOCKER_HOST {host} needs DOCKER_TLS_CERTDIR, DOCKER_TLS_VERIFY: 1 and "
                          "DOCKER_CERT_PATH, so that the client checks the daemon's certificate")
    else:
        raise Failure(f"{where}: a docker:dind service needs DOCKER_HOST tcp://docker:2376 (TLS) "
                      "or tcp://docker:2375 with DOCKER_TLS_CERTDIR: \"\"; got {host!r}")


# What the copy-paste checks must refuse, each beside a fix they must accept: the mistakes
# the guides once made, so that a check that stops catching them fails here.
UNSAFE_GITHUB = """
on: push
jobs:
  image:
    runs-on: self-hosted
    permissions: {id-token: write}
    steps:
      - run: curl -sS "$BROKER/v1/ecr/login-password" | docker login --username AWS --password-stdin "$REGISTRY"
      - run: docker push "$REGISTRY/acme/api:1"
%s
"""
UNSAFE_GITLAB = """
build-image:
  image: docker:27-cli@sha256:%s
  services: ["docker:27-dind@sha256:%s"]
  variables: {DOCKER_HOST: "tcp://docker:2375"%s}
  id_tokens: {BROKER_ID_TOKEN: {aud: ecr-token-broker}}
  script: ["curl -sS $URL | docker login --username AWS --password-stdin $REGISTRY"]
%s
""" % ("0" * 64, "1" * 64, "%s", "%s")


def check_the_checks(runner: "Runner") -> None:
    def refused(check, *args) -> None:
        try:
            check(*args)
        except Failure:
            return
        raise Failure(f"{check.__name__}{args!r} accepted what it must refuse")

    def block(kind: str, text: str) -> Block:
        return Block(DOCS / "check.md", 1, "yaml", kind, text)

    refused(check_plain_http, "value: http://ecr-token-broker.ecr-token-broker.svc\n")
    refused(check_plain_http, 'curl "http://10.0.0.7:8080/v1/whoami"')
    for fine in ("http://127.0.0.1:8080/x", "http://localhost:1", "http://[::1]:80/", "https://b.example.com"):
        check_plain_http(fine)
    refused(check_pinned, "curlimages/curl:8.11.1", "x")
    check_pinned("curlimages/curl:8.11.1@sha256:" + "a" * 64, "x")
    check_pinned("123456789012.dkr.ecr.eu-west-1.amazonaws.com/acme/api:1.0.0", "x")
    refused(runner.github, block("github-workflow", UNSAFE_GITHUB % ""), False)
    refused(runner.github, block("github-workflow", UNSAFE_GITHUB % "      - run: docker logout x"), False)
    runner.github(block("github-workflow", UNSAFE_GITHUB % "      - if: always()\n        run: docker logout x"), False)
    logout = "  after_script: [\"docker logout $REGISTRY\"]"
    refused(runner.gitlab, block("gitlab-ci", UNSAFE_GITLAB % ("", logout)), False)
    refused(runner.gitlab, block("gitlab-ci", UNSAFE_GITLAB % (', DOCKER_TLS_CERTDIR: ""', "")), False)
    runner.gitlab(block("gitlab-ci", UNSAFE_GITLAB % (', DOCKER_TLS_CERTDIR: ""', logout)), False)
    tls = (', DOCKER_TLS_CERTDIR: "/certs"', logout)
    refused(runner.gitlab, block("gitlab-ci", (UNSAFE_GITLAB % tls).replace("2375", "2376")), False)
    runner.gitlab(block("gitlab-ci", (UNSAFE_GITLAB % tls).replace("2375", "2376").replace(
        '"/certs"', '"/certs", DOCKER_TLS_VERIFY: "1", DOCKER_CERT_PATH: "/certs/client"')), False)


def check_records(records: list[dict], stack: Stack, where: str) -> None:
    """Checks what the stand-ins were given: the issued password, where it belongs."""
    expected_auth = base64.b64encode(f"AWS:{stack.password}".encode()).decode()
    for record in records:
        tool, args = record["tool"], record["args"]
        if tool == "docker" and args[:1] == ["login"]:
            hosts = [a for a in args[1:] if not a.startswith("-") and a != "AWS"]
            if "--username" not in args or args[args.index("--username") + 1] != "AWS":
                raise Failure(f"{where}: docker login without --username AWS: {args}")
            if len(hosts) != 1 or not ECR_HOST.match(hosts[0]):
                raise Failure(f"{where}: docker login to {hosts}, not one ECR registry host")
            if record.get("stdin", "").strip() != stack.password:
                raise Failure(f"{where}: docker login was not given the issued password on stdin")
        elif tool == "docker" and args[:1] in (["pull"], ["push"]):
            if "helper" in record:
                helper = record["helper"]
                if helper["status"] != 0:
                    raise Failure(f"{where}: the credential helper failed for {record['host']}")
                answer = json.loads(helper["stdout"])
                if answer.get("Username") != "AWS" or answer.get("Secret") != stack.password:
                    raise Failure(f"{where}: the credential helper did not answer the issued password")
            elif record.get("auth") != expected_auth:
                raise Failure(f"{where}: docker's config holds no issued credential for {record['host']}")
        elif tool == "docker" and args[:1] in (["build"], ["tag"], ["logout"]):
            pass
        elif tool == "kubectl" and args[:1] == ["apply"] and "input" in record:
            for doc in kubernetes_validate(record["input"], f"{where}: kubectl apply"):
                if doc.get("kind") == "Secret" and doc.get("type") == "kubernetes.io/dockerconfigjson":
                    config = json.loads(base64.b64decode(doc["data"][".dockerconfigjson"]))
                    if not any(entry.get("auth") == expected_auth for entry in config["auths"].values()):
                        raise Failure(f"{where}: the applied Secret does not hold the issued password")
        elif tool == "apk" and args[:1] == ["add"]:
            for package in (a for a in args[1:] if not a.startswith("-")):
                if shutil.which(package) is None:
                    raise Failure(f"{where}: apk add {package}: no such command here to stand in")
        else:
            raise Failure(f"{where}: the stand-in {tool} does not know `{tool} {' '.join(args)}`")


class Runner:
    def __init__(self, stack: Stack, work: Path):
        self.stack, self.work = stack, work
        self.passed, self.failed, self.skipped = 0, [], []
        self.client = self.build_client()

    def build_client(self) -> Path | None:
        """The client binary's directory, when this tree builds it (debug, to build faster)."""
        manifests = [REPO / "Cargo.toml", *REPO.glob("*/Cargo.toml")]
        if not any(f'name = "{CLIENT_BINARY}"' in m.read_text() for m in manifests):
            return None
        subprocess.run(["cargo", "build", "--locked", "--workspace", "--bin", CLIENT_BINARY],
                       cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "debug"
        if not (target / CLIENT_BINARY).exists():
            raise Failure(f"cargo built no {target / CLIENT_BINARY}")
        self.attempt(f"{CLIENT_BINARY} needs only the C library",
                     partial(check_one_binary, target / CLIENT_BINARY))
        return target

    def missing(self, text: str) -> str | None:
        """What a block needs that this tree does not have, if anything."""
        for path in GATED_PATHS:
            if path in text and path not in self.stack.paths:
                return f"{path} is not in openapi.yaml yet"
        # credHelpers sends docker to the client binary too.
        if (CLIENT_BINARY in text or "credHelpers" in text) and self.client is None:
            return f"{CLIENT_BINARY} is not built by this tree yet"
        return None

    def sandbox(self, name: str) -> tuple[Path, dict]:
        root = self.work / name
        (root / "home").mkdir(parents=True)
        install_stand_ins(root / "bin")
        path = [str(root / "bin")] + ([str(self.client)] if self.client else []) + [os.environ["PATH"]]
        env = {
            "PATH": os.pathsep.join(path), "HOME": str(root / "home"), "LANG": "C.UTF-8",
            "TMPDIR": str(root), "DOCS_TEST_RECORD": str(root / "calls.jsonl"),
            "BROKER": self.stack.broker, "JWT": self.stack.jwt,
        }
        return root, env

    def run(self, where: str, script: str, env: dict, cwd: Path, shell: list[str]) -> str:
        path = cwd / f"script-{secrets.token_hex(4)}.sh"
        path.write_text(script)
        out = subprocess.run([*shell, str(path)], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=RUN_TIMEOUT)
        if out.returncode != 0:
            raise Failure(f"{where}: exited {out.returncode}:\n{self.redact(out.stdout + out.stderr)}")
        return out.stdout + out.stderr

    def redact(self, text: str) -> str:
        for secret in (*self.stack.minted, self.stack.password):
            text = text.replace(secret, "<redacted>")
        return text

    def records(self, root: Path) -> list[dict]:
        path = root / "calls.jsonl"
        if not path.exists():
            return []
        records = [json.loads(line) for line in path.read_text().splitlines()]
        path.unlink()
        return records

    def attempt(self, where: str, check) -> None:
        try:
            check()
            self.passed += 1
            print(f"ok      {where}", flush=True)
        except (Failure, subprocess.SubprocessError, yaml.YAMLError, json.JSONDecodeError,
                KeyError, TypeError, AttributeError, ValueError) as e:
            self.failed.append(where)
            print(f"FAILED  {where}: {self.redact(str(e))}", flush=True)

    # --- per guide ---

    def guide(self, guide: Path) -> None:
        blocks = blocks_of(guide)
        root, env = self.sandbox(guide.stem)
        shell_blocks = []
        for block in blocks:
            need = self.missing(block.text)
            if need:
                # What can be checked without running still is.
                self.skipped.append(f"{block.where()} ({need})")
                print(f"skipped {block.where()}: {need}; only its shape is checked", flush=True)
            execute = need is None
            self.attempt(f"{block.where()} (no plain http)", partial(check_plain_http, block.text))
            if block.lang == "sh":
                if execute:
                    shell_blocks.append(block)
            elif block.lang == "yaml" and block.kind == "github-workflow":
                self.attempt(block.where(), partial(self.github, block, execute))
            elif block.lang == "yaml" and block.kind == "gitlab-ci":
                self.attempt(block.where(), partial(self.gitlab, block, execute))
            elif block.lang == "yaml" and block.kind == "kubernetes":
                self.attempt(block.where(), partial(self.kubernetes, block, execute))
            elif block.lang == "json":
                self.attempt(block.where(), partial(self.json_block, block))
            elif block.lang == "toml":
                earlier = [b for b in blocks if b.lang == "toml" and b.line < block.line]
                self.attempt(block.where(), partial(self.config_fragment, block, earlier))
            elif block.lang not in SHOWN_ONLY:
                self.failed.append(block.where())
                print(f"FAILED  {block.where()}: a ```{block.lang} {block.kind} block is neither run nor "
                      "checked; see scripts/test_docs.py for the kinds", flush=True)
        if shell_blocks:
            where = f"{guide.relative_to(REPO)} (sh blocks at lines {', '.join(str(b.line) for b in shell_blocks)})"
            self.attempt(where, partial(self.shell, shell_blocks, root, env))

    def shell(self, blocks: list[Block], root: Path, env: dict) -> None:
        script = "set -euo pipefail\n"
        for block in blocks:
            script += f"# --- {block.where()}\n"
            script += f"trap 'echo \"failed in the block at {block.where()}\" >&2' ERR\n{block.text}"
        self.run(blocks[0].guide.name, script, env, root, ["bash", "--noprofile", "--norc"])
        check_records(self.records(root), self.stack, blocks[0].guide.name)

    def config_fragment(self, block: Block, earlier: list[Block]) -> None:
        """A piece of the broker's config: check-config must accept it, in a whole config
        made of the guide's toml blocks up to this one (a later block may name an issuer or a
        rule an earlier one set up)."""
        text = "".join(b.text for b in earlier) + block.text
        text += CONFIG_BASE + ("" if "[[issuers]]" in text else CONFIG_ISSUER)
        binary = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "debug/ecr-token-broker"
        with tempfile.NamedTemporaryFile("w", suffix=".toml", dir=self.work) as f:
            f.write(text)
            f.flush()
            env = {k: v for k, v in os.environ.items()
                   if not k.startswith("ECR_TOKEN_BROKER_") and k != "DATABASE_URL"}
            out = subprocess.run([str(binary), "check-config", f.name], capture_output=True,
                                 text=True, env=env)
        if out.returncode != 0:
            raise Failure(f"check-config refuses it:\n{out.stderr}")

    def json_block(self, block: Block) -> None:
        document = json.loads(block.text)
        if block.kind == "docker-config":
            helpers = document.get("credHelpers", {})
            if not helpers or not all(ECR_HOST.match(h) for h in helpers):
                raise Failure("a docker-config block needs credHelpers for ECR hosts")
            if set(helpers.values()) != {CLIENT_BINARY.removeprefix("docker-credential-")}:
                raise Failure(f"credHelpers must name {CLIENT_BINARY.removeprefix('docker-credential-')}")

    def kubernetes(self, block: Block, execute: bool) -> None:
        documents = kubernetes_validate(block.text, block.where())
        for doc in documents:
            spec = doc.get("spec", {})
            pod = spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec") \
                or spec.get("template", {}).get("spec") or spec
            for container in pod.get("initContainers", []) + pod.get("containers", []):
                check_pinned(container["image"], f"{doc['kind']} {doc['metadata']['name']}")
            if doc.get("kind") == "CronJob" and execute:
                self.run_pod(block, doc["spec"]["jobTemplate"]["spec"]["template"]["spec"])

    def run_pod(self, block: Block, pod: dict) -> None:
        """Runs a pod's init containers and containers in order, here: volumes become
        directories, a projected service account token becomes a development JWT."""
        root, env = self.sandbox(f"{block.guide.stem}-{block.line}")
        volumes = {}
        for volume in pod.get("volumes", []):
            directory = root / "volumes" / volume["name"]
            directory.mkdir(parents=True)
            for source in volume.get("projected", {}).get("sources", []):
                token = source.get("serviceAccountToken")
                if token:
                    jwt = self.stack.mint(aud=token["audience"])
                    (directory / token["path"]).write_text(jwt)
            volumes[volume["name"]] = directory
        for container in pod.get("initContainers", []) + pod["containers"]:
            mounts = {m["mountPath"]: volumes[m["name"]] for m in container.get("volumeMounts", [])}

            # One pass, longest mount first, so a mapped path is never mapped again.
            pattern = re.compile("|".join(re.escape(m) for m in sorted(mounts, key=len, reverse=True))
                                 + r"(?=/|[\s\"']|$)") if mounts else None

            def local(text: str) -> str:
                return pattern.sub(lambda m: str(mounts[m.group(0)]), text) if pattern else text

            container_env = dict(env)
            for var in container.get("env", []):
                if "value" in var:
                    container_env[var["name"]] = local(var["value"])
            # The broker's URL is the local one here.
            container_env = {k: v.replace("https://ecr-token-broker.example.com", self.stack.broker)
                             for k, v in container_env.items()}
            command = container.get("command", []) + container.get("args", [])
            where = f"{block.where()} container {container['name']}"
            if command[:2] in (["sh", "-c"], ["/bin/sh", "-c"]):
                self.run(where, "set -eu\n" + local(command[2]), container_env, root, ["sh"])
            elif command[:1] == ["kubectl"] or (not container.get("command") and "kubectl" in container["image"]):
                argv = command[1:] if command[:1] == ["kubectl"] else command
                self.run(where, "kubectl " + " ".join(map(local, argv)) + "\n", container_env, root, ["sh"])
            else:
                raise Failure(f"{where}: cannot run {command} here")
        check_records(self.records(root), self.stack, block.where())

    # --- CI systems ---

    def github(self, block: Block, execute: bool) -> None:
        workflow = yaml.safe_load(block.text)
        triggers = workflow.get("on", workflow.get(True))
        if not triggers or not isinstance(workflow.get("jobs"), dict):
            raise Failure("a workflow needs `on` and `jobs`")
        for job_name, job in workflow["jobs"].items():
            permissions = job.get("permissions", workflow.get("permissions", {}))
            if permissions.get("id-token") != "write":
                raise Failure(f"job {job_name}: needs `permissions: id-token: write` for the OIDC token")
            if "runs-on" not in job or not job.get("steps"):
                raise Failure(f"job {job_name}: needs runs-on and steps")
            for step in job["steps"]:
                if ("run" in step) == ("uses" in step):
                    raise Failure(f"job {job_name}: a step needs exactly one of run and uses: {step}")
                if "uses" in step and not step["uses"].startswith("actions/checkout@"):
                    raise Failure(f"job {job_name}: the docs test cannot run {step['uses']}")
            always = [step.get("run", "") for step in job["steps"]
                      if re.fullmatch(r"(\$\{\{\s*)?always\(\)(\s*\}\})?", str(step.get("if", "")).strip())]
            logs_in_and_out([step.get("run", "") for step in job["steps"]], always, f"job {job_name}")
        if not execute:
            return
        root, env = self.sandbox(f"{block.guide.stem}-{block.line}")
        request_token = secrets.token_urlsafe(24)
        with TokenEndpoint(self.stack, request_token) as endpoint:
            for job_name, job in workflow["jobs"].items():
                declared = {**workflow.get("env", {}), **job.get("env", {})}
                job_env = {**env, **{k: self.expression(str(v), {}) for k, v in declared.items()},
                           "ACTIONS_ID_TOKEN_REQUEST_URL": f"{endpoint.url}/token?api-version=2.0",
                           "ACTIONS_ID_TOKEN_REQUEST_TOKEN": request_token,
                           "GITHUB_ENV": str(root / "github_env"), "GITHUB_OUTPUT": str(root / "github_output"),
                           "RUNNER_TEMP": str(root), "GITHUB_WORKSPACE": str(root),
                           "GITHUB_SHA": "0" * 40}
                log, outputs = [], {}
                for step in job["steps"]:
                    if "uses" in step:
                        continue  # actions/checkout: nothing to check out here
                    # Every step runs here, those with `if: always()` last as their place says.
                    for name in ("github_env", "github_output"):
                        (root / name).write_text("")
                    step_env = {**job_env, **{k: self.expression(str(v), outputs) for k, v in step.get("env", {}).items()}}
                    log.append(self.run(f"job {job_name}, step {step.get('name', step.get('id'))}",
                                        self.expression(step["run"], outputs), step_env, root,
                                        ["bash", "--noprofile", "--norc", "-eo", "pipefail"]))
                    job_env.update(read_github_file(root / "github_env"))
                    if "id" in step:
                        outputs[step["id"]] = read_github_file(root / "github_output")
                self.check_masked("".join(log), endpoint.issued)
                check_records(self.records(root), self.stack, f"job {job_name}")
            if not endpoint.issued:
                raise Failure("no step asked for the OIDC token")

    def expression(self, text: str, outputs: dict) -> str:
        def value(match):
            expr = match.group(1).strip()
            if expr == "vars.ECR_TOKEN_BROKER_URL":
                return self.stack.broker
            step = re.fullmatch(r"steps\.([\w-]+)\.outputs\.([\w-]+)", expr)
            if step and step.group(2) in outputs.get(step.group(1), {}):
                return outputs[step.group(1)][step.group(2)]
            raise Failure(f"the docs test does not know the expression ${{{{ {expr} }}}}")
        return re.sub(r"\$\{\{(.*?)\}\}", value, text)

    def check_masked(self, log: str, jwts: list[str]) -> None:
        """Every secret in the log is masked, by an ::add-mask:: line before it shows."""
        masked = set()
        for line in log.splitlines():
            if line.startswith("::add-mask::"):
                masked.add(line.removeprefix("::add-mask::"))
                continue
            for secret in [self.stack.password, *jwts]:
                if secret in line:
                    raise Failure("a secret shows in the log unmasked")
        for name, secret in [("the registry password", self.stack.password), ("the OIDC token", jwts[-1] if jwts else None)]:
            if secret and secret not in masked:
                raise Failure(f"the workflow does not ::add-mask:: {name}")

    def gitlab(self, block: Block, execute: bool) -> None:
        pipeline = yaml.safe_load(block.text)
        reserved = {"stages", "variables", "default", "include", "workflow", "image", "services",
                    "before_script", "after_script", "cache"}
        jobs = {k: v for k, v in pipeline.items() if k not in reserved and not k.startswith(".")}
        if not jobs:
            raise Failure("no job in the pipeline")
        for job_name, job in jobs.items():
            if not isinstance(job.get("script"), list) or not job.get("id_tokens"):
                raise Failure(f"job {job_name}: needs a script list and id_tokens")
            if not all(isinstance(spec, dict) and "aud" in spec for spec in job["id_tokens"].values()):
                raise Failure(f"job {job_name}: every id_tokens entry needs an aud")
            variables = {**pipeline.get("variables", {}), **job.get("variables", {})}
            variables = {k: v["value"] if isinstance(v, dict) else v for k, v in variables.items()}
            for image in [job.get("image", pipeline.get("image"))] + job.get("services", pipeline.get("services", [])):
                if image:
                    check_pinned(image if isinstance(image, str) else image["name"], f"job {job_name}")
            check_dind(job, variables, f"job {job_name}")
            after = pipeline.get("after_script", []) + job.get("after_script", [])
            logs_in_and_out(pipeline.get("before_script", []) + job.get("before_script", []) + job["script"],
                            after, f"job {job_name}")
            if not execute:
                continue
            root, env = self.sandbox(f"{block.guide.stem}-{block.line}-{job_name}")
            # GitLab's own variables that the dev rule does not look at, and the dev rule's.
            claims = {"namespace_path": "acme", "project_path": "acme/api", "user_login": "dev"}
            env.update({"CI_PROJECT_PATH": "acme/api", "CI_COMMIT_SHA": "0" * 40,
                        "CI_COMMIT_REF_PROTECTED": "true"})
            for name, spec in job["id_tokens"].items():
                env[name] = self.stack.mint(aud=spec["aud"], claims=claims)
            for name, value in variables.items():
                env[name] = str(value).replace("https://ecr-token-broker.example.com", self.stack.broker)
            lines = pipeline.get("before_script", []) + job.get("before_script", []) + job["script"]
            self.run(f"job {job_name}", "\n".join(lines) + "\n", env, root, ["bash", "-eo", "pipefail"])
            # GitLab runs after_script in a shell of its own, once the script is done.
            if after:
                self.run(f"job {job_name}, after_script", "\n".join(after) + "\n", env, root,
                         ["bash", "-eo", "pipefail"])
            check_records(self.records(root), self.stack, f"job {job_name}")

    # --- the portal, in a browser ---

    def portal(self, portal_port: int, other_port: int) -> None:
        allowed = f"http://localhost:{portal_port}"
        other = f"http://127.0.0.1:{other_port}"
        with StaticServer(DOCS / "portal", portal_port), StaticServer(DOCS / "portal", other_port):
            def served_from_allowed_origin():
                dom = self.browse(f"{allowed}/index.html")
                assert_state(dom, "whoami", "ok")
                assert_text(dom, "whoami-rule", "dev-acme")
                assert_text(dom, "whoami-role", "arn:aws:iam::123456789012:role/ecr-push")
                assert_state(dom, "issue", "ok")
                expected = self.stack.issue()["authorizationData"][0]
                host = urllib.parse.urlsplit(expected["proxyEndpoint"]).netloc
                if f'data-host="{host}"' not in dom:
                    raise Failure(f"the page does not show the registry {host}")
                if self.stack.password in dom or self.stack.jwt in dom:
                    raise Failure("the page shows a secret")

            def served_from_another_origin():
                before = self.stack.aws_calls()
                dom = self.browse(f"{other}/index.html")
                assert_state(dom, "whoami", "error")
                if "Failed to fetch" not in element(dom, "whoami"):
                    raise Failure(f"expected the browser's fetch failure, got {element(dom, 'whoami')!r}")
                assert_state(dom, "issue", "error")
                if self.stack.aws_calls() != before:
                    raise Failure("the broker called AWS for a page from an origin it does not allow")

            self.attempt(f"docs/portal/index.html from {allowed} (allowed)", served_from_allowed_origin)
            self.attempt(f"docs/portal/index.html from {other} (not allowed)", served_from_another_origin)

    def browse(self, url: str) -> str:
        fragment = urllib.parse.urlencode({"broker": self.stack.broker, "token": self.stack.jwt})
        with tempfile.TemporaryDirectory(dir=self.work) as profile:
            out = subprocess.run(
                ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=15000",
                 "--dump-dom", f"{url}#{fragment}"],
                capture_output=True, text=True, timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL)
        if out.returncode != 0 or "<html" not in out.stdout:
            raise Failure(f"chromium exited {out.returncode}:\n{self.redact(out.stderr[-2000:])}")
        return out.stdout


def element(dom: str, element_id: str) -> str:
    match = re.search(rf'<[a-z]+ id="{element_id}"[^>]*>(.*?)</', dom, re.S)
    if not match:
        raise Failure(f"the page has no #{element_id}")
    return match.group(1)


def assert_state(dom: str, element_id: str, state: str) -> None:
    match = re.search(rf'<[a-z]+ id="{element_id}" data-state="([a-z]+)"', dom)
    if not match or match.group(1) != state:
        raise Failure(f"#{element_id} is {match.group(1) if match else 'missing'}, not {state}: "
                      f"{element(dom, element_id)!r}")


def assert_text(dom: str, element_id: str, text: str) -> None:
    if element(dom, element_id) != text:
        raise Failure(f"#{element_id} shows {element(dom, element_id)!r}, not {text!r}")


def read_github_file(path: Path) -> dict:
    """NAME=value lines, and NAME<<DELIMITER blocks, as GITHUB_ENV and GITHUB_OUTPUT hold."""
    values, lines = {}, path.read_text().splitlines()
    while lines:
        line = lines.pop(0)
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            body = []
            while lines and lines[0] != delimiter:
                body.append(lines.pop(0))
            lines.pop(0)
            values[name] = "\n".join(body)
        elif "=" in line:
            name, value = line.split("=", 1)
            values[name] = value
    return values


class Served:
    """An HTTP server on 127.0.0.1 in a thread, for the length of a `with`."""

    def __init__(self, handler, port: int = 0, host: str = "127.0.0.1"):
        self.server = ThreadingHTTPServer((host, port), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class StaticServer(Served):
    def __init__(self, directory: Path, port: int):
        class Quiet(SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass
        super().__init__(partial(Quiet, directory=str(directory)), port)


class TokenEndpoint(Served):
    """GitHub's OIDC token endpoint, as a runner reaches it: checks the request token and
    mints a development JWT for the audience asked, with GitHub-shaped claims."""

    def __init__(self, stack: Stack, request_token: str):
        self.issued = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                authorized = self.headers.get("Authorization", "").lower() == f"bearer {request_token}".lower()
                if not authorized or "audience" not in query:
                    self.send_response(401 if not authorized else 400)
                    self.end_headers()
                    return
                jwt = stack.mint(aud=query["audience"][0], claims={
                    "sub": "repo:acme/api:ref:refs/heads/main", "workflow": "release", "run_id": "42"})
                outer.issued.append(jwt)
                body = json.dumps({"count": 1, "value": jwt}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        super().__init__(Handler)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", required=True)
    parser.add_argument("--issuer-port", type=int, required=True)
    parser.add_argument("--issuer-state", required=True)
    parser.add_argument("--aws-proxy", required=True)
    parser.add_argument("--portal-port", type=int, required=True)
    parser.add_argument("--other-port", type=int, required=True)
    parser.add_argument("--work", required=True, type=Path)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    stack = Stack(args)
    runner = Runner(stack, args.work)
    guides = sorted(DOCS.glob("*.md"))
    if not guides:
        print("no guides in docs/", file=sys.stderr)
        return 1
    runner.attempt("the copy-paste checks refuse what they must", partial(check_the_checks, runner))
    for guide in guides:
        runner.guide(guide)
    runner.portal(args.portal_port, args.other_port)

    print(f"docs: {runner.passed} passed, {len(runner.failed)} failed, {len(runner.skipped)} skipped")
    for skipped in runner.skipped:
        print(f"  skipped {skipped}")
    return 1 if runner.failed else 0


if __name__ == "__main__":
    sys.exit(main())
