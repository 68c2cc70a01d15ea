"""Become the unit's process: run as root under `unshare --mount`, with a spec from tests/deploy/unit.py.

    unshare --mount --propagation private python3 tests/deploy/unit_sandbox.py SPEC.json

In this process's own mount namespace: every mount read-only (ProtectSystem=strict;
/proc, /sys and /dev are left to the settings systemd has for them), then each
writable path of the unit a lab folder bind-mounted read-write, a fresh tmpfs on /tmp
and /var/tmp (PrivateTmp=), an empty mode-000 tmpfs on /home, /root and /run/user
(ProtectHome=yes). What stands for the program's own folders (the checkout in
place of /opt/secure-link/src, its venv, the interpreter), if a CI clone or pyenv
put them under one of those, is bound back in read-only. Then LimitNOFILE=, the user and group with their supplementary
groups, NoNewPrivileges=, UMask=, WorkingDirectory=, and exec of ExecStart= with the
environment systemd would give it. Standard library only; the PID stays the caller's.
"""

from __future__ import annotations

import ctypes
import json
import os
import pwd
import grp
import re
import resource
import subprocess
import sys
from typing import Any

API_FILESYSTEMS = ("/proc", "/sys", "/dev")  # ProtectKernel*/PrivateDevices= govern these, not ProtectSystem=
PR_SET_NO_NEW_PRIVS = 38
MS_BIND = 4096


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, text=True)


def mounts() -> list[tuple[str, str, str]]:
    """(mount point, per-mount options, file system type) of every mount in this namespace."""
    found = []
    with open("/proc/self/mountinfo") as table:
        for line in table:
            fields, _, rest = line.partition(" - ")
            point, options = fields.split()[4:6]
            found.append((re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), point), options, rest.split()[0]))
    return found


def under(path: str, folders: tuple[str, ...]) -> bool:
    return any(path == folder or path.startswith(folder + "/") for folder in folders)


def read_only_everywhere() -> None:
    """ProtectSystem=strict: each mount read-only, keeping its other flags (nosuid, noexec...)."""
    for point, options, fstype in mounts():
        if under(point, API_FILESYSTEMS) or fstype == "nsfs":
            continue
        flags = ",".join("ro" if flag == "rw" else flag for flag in options.split(","))
        mount("-o", f"remount,bind,{flags}", point)


def writable(folders: dict[str, str]) -> None:
    """The unit's writable paths: a bind mount inherits the read-only flag, so it is lifted."""
    for path, folder in folders.items():
        mount("--bind", folder, path)
        mount("-o", "remount,bind,rw,nosuid,nodev", path)


HIDDEN_BY_PRIVATE_TMP = ("/tmp", "/var/tmp")
HIDDEN_BY_PROTECT_HOME = ("/home", "/root", "/run/user")


def private_tmp() -> None:
    for path in HIDDEN_BY_PRIVATE_TMP:
        mount("-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "tmpfs", path)


def protect_home(keeps: list[str]) -> None:
    """Empty and inaccessible; one holding a folder to keep is left traversable (mode 711)."""
    for path in HIDDEN_BY_PROTECT_HOME:
        if not os.path.isdir(path):
            continue
        if any(under(kept, (path,)) for kept in keeps):
            mount("-t", "tmpfs", "-o", "mode=711,nosuid,nodev", "tmpfs", path)
        else:
            mount("-t", "tmpfs", "-o", "ro,mode=000,nosuid,nodev,noexec", "tmpfs", path)


def keep_visible(folders: dict[str, int]) -> None:
    """Bind each folder back where the fresh tmpfs hid it, read-only, from the descriptor
    opened before (the name no longer reaches it); then the home tmpfs goes read-only too."""
    for path, original in folders.items():
        os.makedirs(path, mode=0o711, exist_ok=True)
        bind(f"/proc/self/fd/{original}", path)
        os.close(original)
        mount("-o", "remount,bind,ro,nosuid,nodev", path)
    for home in HIDDEN_BY_PROTECT_HOME:
        if any(under(path, (home,)) for path in folders):
            mount("-o", "remount,ro,nosuid,nodev", home)


def bind(source: str, target: str) -> None:
    """mount(2) itself: mount(8) would resolve /proc/self/fd/N by name, which is hidden now."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(source.encode(), target.encode(), None, MS_BIND, None) != 0:
        raise OSError(ctypes.get_errno(), f"bind {source} on {target}")


def become(spec: dict[str, Any]) -> None:
    """Limits, then the user (systemd's order: privileges go last), then its umask and folder."""
    if spec["nofile"]:
        # Without CAP_SYS_RESOURCE (CI's container) the hard limit cannot rise: the unit's value, capped by it.
        ceiling = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        soft, _, hard = spec["nofile"].partition(":")
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(int(soft), ceiling), min(int(hard or soft), ceiling)))
    account = pwd.getpwnam(spec["user"])
    gid = grp.getgrnam(spec["group"]).gr_gid
    os.initgroups(account.pw_name, gid)
    os.setgid(gid)
    os.setuid(account.pw_uid)
    if spec["no_new_privileges"]:
        assert ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
    os.umask(spec["umask"])
    os.chdir(spec["cwd"])


def main(spec_path: str) -> None:
    with open(spec_path) as file:
        spec = json.load(file)
    read_only_everywhere()
    writable(spec["writable"])
    hidden = ((HIDDEN_BY_PRIVATE_TMP if spec["private_tmp"] else ())
              + (HIDDEN_BY_PROTECT_HOME if spec["protect_home"] == "yes" else ()))
    kept = {path: os.open(path, os.O_PATH | os.O_DIRECTORY) for path in spec["program"] if under(path, hidden)}
    if spec["private_tmp"]:
        private_tmp()
    if spec["protect_home"] == "yes":
        protect_home(list(kept))
    keep_visible(kept)
    become(spec)
    os.execve(spec["argv"][0], spec["argv"], spec["env"])


if __name__ == "__main__":
    main(sys.argv[1])
