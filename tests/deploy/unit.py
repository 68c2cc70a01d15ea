"""deploy/secure-link.service as the lab runs it: the unit file read, its sandbox rebuilt by hand.

No systemd runs here (nor in CI's container), so the lab does what the unit asks of
systemd, reading every setting from the unit file itself (never a second copy of it):
`User=`/`Group=`, `ExecStart=`, `WorkingDirectory=`, `UMask=`, `LimitNOFILE=`,
`NoNewPrivileges=`, the environment file plus `Environment=`, and a private mount
namespace (`unshare -m`) in which `ProtectSystem=strict` makes every mount read-only
except the unit's `ReadWritePaths=`, `StateDirectory=` and `RuntimeDirectory=`;
`PrivateTmp=` gives a fresh /tmp and /var/tmp, `ProtectHome=` an empty, inaccessible
/home, /root and /run/user. tests/deploy/unit_sandbox.py builds that inside the namespace, drops
to the unit's user and execs the command. The rest of the hardening (system calls,
capabilities, PrivateUsers, ...) is `systemd-analyze security`'s to rate.

The checkout and its venv stand in for /opt/secure-link/src and /opt/secure-link/venv.
The writable paths keep the unit's own names (so the env file's MEDIA_ROOT and
MASTER_KEY_FILE stay as shipped): each is a lab folder bind-mounted there. Their mount
points are made on this machine if missing, and removed afterwards if the lab made them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from collections.abc import Iterator

from dotenv import dotenv_values

from secure_link.config import PROJECT_ROOT

UNIT = PROJECT_ROOT / "deploy" / "secure-link.service"
SANDBOX = Path(__file__).resolve().parent / "unit_sandbox.py"
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"  # what systemd gives a service
CHECKOUT, VENV = "/opt/secure-link/src", "/opt/secure-link/venv"  # the unit's paths for them


@dataclasses.dataclass(frozen=True)
class Unit:
    """The [Service] section: each setting's values in the order given."""

    service: dict[str, list[str]]

    @classmethod
    def read(cls, path: Path = UNIT) -> Unit:
        service: dict[str, list[str]] = {}
        section = ""
        for line in (raw.strip() for raw in path.read_text().splitlines()):
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line
                continue
            assert not line.endswith("\\"), f"{path.name}: a continued line is not read here: {line}"
            key, _, value = line.partition("=")
            if section == "[Service]":
                service.setdefault(key.strip(), []).append(value.strip())
        return cls(service)

    def value(self, key: str, default: str = "") -> str:
        """A single-valued setting: the last assignment wins, as in systemd."""
        return self.service.get(key, [default])[-1]

    def words(self, key: str) -> list[str]:
        """A list setting: every assignment's words; an empty assignment resets the list."""
        words: list[str] = []
        for value in self.service.get(key, []):
            words = words + value.split() if value else []
        return words

    def yes(self, key: str) -> bool:
        return self.value(key, "no").lower() in ("yes", "true", "on", "1")

    @property
    def command(self) -> list[str]:
        """ExecStart= with this venv's program for the unit's venv path."""
        command = shlex.split(self.value("ExecStart"))
        assert command[0].startswith(VENV + "/"), command
        return [str(Path(sys.prefix) / command[0].removeprefix(VENV + "/")), *command[1:]]

    @property
    def environment(self) -> dict[str, str]:
        """Environment= lines (each holds KEY=VALUE words, shell-quoted)."""
        pairs = (word.split("=", 1) for value in self.service.get("Environment", []) for word in shlex.split(value))
        return dict(pairs)  # type: ignore[arg-type]

    @property
    def state_directories(self) -> list[str]:
        return [f"/var/lib/{name}" for name in self.words("StateDirectory")]

    @property
    def runtime_directories(self) -> list[str]:
        return [f"/run/{name}" for name in self.words("RuntimeDirectory")]

    @property
    def writable(self) -> list[str]:
        """Every path the unit may write: ReadWritePaths ("-" marks one that may be missing),
        its state and runtime directories."""
        return [path.lstrip("-+") for path in self.words("ReadWritePaths")] + \
            self.state_directories + self.runtime_directories

    def systemd_environment(self, env_file: Path, **extra: str) -> dict[str, str]:
        """What systemd hands the process: its own few variables, the env file, Environment=."""
        account = pwd.getpwnam(self.value("User"))
        values = {k: v for k, v in dotenv_values(env_file).items() if v}
        own = {"PATH": SYSTEMD_PATH, "LANG": "C.UTF-8", "HOME": account.pw_dir, "USER": account.pw_name,
               "LOGNAME": account.pw_name, "SHELL": account.pw_shell}
        if self.state_directories:
            own["STATE_DIRECTORY"] = ":".join(self.state_directories)
        if self.runtime_directories:
            own["RUNTIME_DIRECTORY"] = ":".join(self.runtime_directories)
        return {**own, **values, **self.environment, **extra}  # type: ignore[dict-item]


def _mode(unit: Unit, path: str) -> int:
    """The mode systemd gives a state or runtime directory (ReadWritePaths: the operator's 0700)."""
    for key, paths in (("StateDirectoryMode", unit.state_directories),
                       ("RuntimeDirectoryMode", unit.runtime_directories)):
        if path in paths:
            return int(unit.value(key, "0755"), 8)
    return 0o700


def ensure_user(unit: Unit) -> None:
    """The unit's system user, made as docs/deploy.md makes it, if this machine lacks it."""
    with contextlib.suppress(KeyError):
        pwd.getpwnam(unit.value("User"))
        return
    subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                    "--shell", "/usr/sbin/nologin", unit.value("User")], check=True, capture_output=True)


@contextlib.contextmanager
def mount_points(unit: Unit) -> Iterator[None]:
    """An empty folder at each writable path the unit names (the sandbox mounts a lab folder
    there); those the lab made are removed afterwards, deepest first, if still empty."""
    made: list[Path] = []
    try:
        for path in map(Path, unit.writable):
            missing = [folder for folder in (path, *path.parents) if not folder.exists()]
            for folder in reversed(missing):
                folder.mkdir(mode=0o755)
                made.append(folder)
        yield
    finally:
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                folder.rmdir()


@dataclasses.dataclass
class Sandbox:
    """One host's copy of the unit's sandbox: which lab folder stands at each writable path."""

    unit: Unit
    folders: dict[str, Path]  # unit path -> lab folder

    def behind(self, path: str) -> Path:
        """The lab file or folder the app sees at `path`, under one of the writable paths."""
        for unit_path, folder in self.folders.items():
            if path == unit_path or path.startswith(unit_path + "/"):
                return folder / path.removeprefix(unit_path).lstrip("/")
        raise AssertionError(f"{path} is under none of the unit's writable paths")

    def command(self, spec_path: Path, env_file: Path, argv: list[str] | None = None, **extra_env: str) -> list[str]:
        """The command line that becomes the unit's process (run it inside the host's netns);
        `argv` runs something else in its place, as the unit would run it."""
        spec = {
            "user": self.unit.value("User"), "group": self.unit.value("Group", self.unit.value("User")),
            "umask": int(self.unit.value("UMask", "0022"), 8), "nofile": self.unit.value("LimitNOFILE"),
            "no_new_privileges": self.unit.yes("NoNewPrivileges"),
            "cwd": str(PROJECT_ROOT) if self.unit.value("WorkingDirectory") == CHECKOUT else self.unit.value("WorkingDirectory"),
            "writable": {path: str(folder) for path, folder in self.folders.items()},
            "private_tmp": self.unit.yes("PrivateTmp"), "protect_home": self.unit.value("ProtectHome", "no"),
            "argv": argv or self.unit.command, "env": self.unit.systemd_environment(env_file, **extra_env),
            # what stands for /opt/secure-link (the checkout, its venv) and the interpreter: exposed
            # read-only where PrivateTmp or ProtectHome would hide them (tests/deploy/unit_sandbox.py)
            "program": sorted({str(PROJECT_ROOT), sys.prefix, sys.base_prefix}),
        }
        assert self.unit.value("ProtectSystem") == "strict", "the sandbox rebuilds ProtectSystem=strict only"
        assert spec["protect_home"] in ("yes", "no"), "the sandbox rebuilds ProtectHome=yes or no only"
        spec_path.write_text(json.dumps(spec))
        spec_path.chmod(0o600)  # it holds the env file's secrets
        return ["unshare", "--mount", "--propagation", "private", sys.executable, str(SANDBOX), str(spec_path)]


def sandbox(unit: Unit, folder: Path, host: str, shared: tuple[str, ...]) -> Sandbox:
    """Lab folders for the unit's writable paths: those in `shared` are one folder for every
    host (the NFS-mounted media, the copied master key), the others (runtime) each host's own.
    Owned by the unit's user, with the modes systemd (or docs/deploy.md) gives them."""
    account = pwd.getpwnam(unit.value("User"))
    folders = {}
    for path in unit.writable:
        name = path.strip("/").replace("/", "_")
        lab_folder = folder / "unit-paths" / (name if path in shared else f"{host}-{name}")
        if not lab_folder.exists():
            lab_folder.mkdir(parents=True)
            shutil.chown(lab_folder, account.pw_uid, account.pw_gid)
            lab_folder.chmod(_mode(unit, path))
        folders[path] = lab_folder
    (folder / "unit-paths").chmod(0o755)
    return Sandbox(unit, folders)


def refused_writes(trace: Path) -> list[str]:
    """Lines of an strace log where a write was refused (EROFS: a read-only mount; EACCES,
    EPERM: no right to): the app tried to write outside the unit's writable paths. Python's
    bytecode cache is left out: the interpreter ignores a failure to write it, and a checkout
    not compiled beforehand is compiled in memory at each start."""
    if not trace.exists():
        return []
    return [line for line in trace.read_text(errors="replace").splitlines()
            if re.search(r"= -1 (EROFS|EACCES|EPERM) ", line) and "__pycache__" not in line
            and (not re.match(r"\d+ +open", line) or re.search(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC", line))]


# Every system call that writes to a path, for `strace -e trace=` (failures only are logged).
WRITING_CALLS = ("open,openat,openat2,creat,mkdir,mkdirat,rename,renameat,renameat2,unlink,unlinkat,rmdir,"
                 "link,linkat,symlink,symlinkat,truncate,chmod,fchmodat,chown,lchown,fchownat,utimensat,"
                 "mknod,mknodat,setxattr,lsetxattr")


def traced(command: list[str], trace: Path) -> list[str]:
    """`command` under strace, logging each writing call that fails (the app's children too).
    With a seccomp filter only those calls stop the process, so sockets run at full speed."""
    return ["strace", "-f", "-qq", "--seccomp-bpf", "-e", f"trace={WRITING_CALLS}", "-e", "status=failed",
            "-s", "200", "-o", str(trace), "--", *command]


def environment_for_sandbox() -> dict[str, str]:
    """The sandbox helper runs as root before it drops to the unit's user: PATH for `mount`."""
    return {"PATH": os.environ.get("PATH", SYSTEMD_PATH)}


# What the probe tries, as the unit's user inside its sandbox: write a file in each folder.
WRITE_PROBE = """
import json, os, sys
seen = {}
for folder in sys.argv[1:]:
    path = os.path.join(folder, "probe-%d" % os.getpid())
    try:
        with open(path, "w"):
            pass
        seen[folder] = oct(os.stat(path).st_mode & 0o777)
        os.unlink(path)
    except OSError as exc:
        seen[folder] = exc.__class__.__name__
print(json.dumps({"uid": os.getuid(), "seen": seen}))
"""
