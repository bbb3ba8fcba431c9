"""The set-up's package list checked against a minimal Debian 12: everything `make demo` and `make test` run
comes from the minimal image, from scripts/setup-system.sh, or from the README's one prerequisite.

Offline and fast: Debian's own package database on this machine (dpkg-query) says which package
holds each file the project runs and what each package depends on; the test then follows those
dependencies from what a fresh machine has (MINIMAL_BOOKWORM), what the script installs and what
the README tells to install, and requires every needed file's package among them.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "setup-system.sh"
# The PostgreSQL major the script installs when none is installed (Debian 12's default).
DEFAULT_MAJOR = "15"

# The packages of Debian 12's minimal image (debian:bookworm, the Essential/required set and apt):
# no python3, no make, no sudo, no PostgreSQL. Only their presence is relied on, never their absence.
MINIMAL_BOOKWORM = frozenset("""
apt base-files base-passwd bash bsdutils coreutils dash debconf debian-archive-keyring debianutils diffutils dpkg
e2fsprogs findutils gcc-12-base gpgv grep gzip hostname init-system-helpers libacl1 libapt-pkg6.0 libattr1
libaudit-common libaudit1 libblkid1 libbz2-1.0 libc-bin libc6 libcap-ng0 libcap2 libcom-err2 libcrypt1 libdb5.3
libdebconfclient0 libext2fs2 libffi8 libgcc-s1 libgcrypt20 libgmp10 libgnutls30 libgpg-error0 libhogweed6 libidn2-0
liblz4-1 liblzma5 libmd0 libmount1 libnettle8 libp11-kit0 libpam-modules libpam-modules-bin libpam-runtime libpam0g
libpcre2-8-0 libseccomp2 libselinux1 libsemanage-common libsemanage2 libsepol2 libsmartcols1 libss2 libstdc++6
libsystemd0 libtasn1-6 libtinfo6 libudev1 libunistring2 libuuid1 libxxhash0 libzstd1 login logsave mawk mount
ncurses-base ncurses-bin passwd perl-base sed sysvinit-utils tar tzdata usr-is-merged util-linux util-linux-extra
zlib1g
""".split())

# What the Makefile, the set-up script and the project run, by the file that must exist.
NEEDED = {
    "make (the README's two commands)": "/usr/bin/make",
    "bash (the Makefile's SHELL, the set-up script)": "/bin/bash",
    "python3 (the .venv)": "/usr/bin/python3",
    "ensurepip (python3 -m venv)": "/usr/lib/python3.11/ensurepip/__init__.py",
    "id, rm, touch (the set-up, the Makefile)": "/usr/bin/id",
    "sed (the set-up's last line)": "/bin/sed",
    "apt-get (the set-up)": "/usr/bin/apt-get",
    "runuser (the embedded cluster as root)": "/sbin/runuser",
    "initdb, pg_ctl, postgres (the embedded cluster)": f"/usr/lib/postgresql/{DEFAULT_MAJOR}/bin/initdb",
    "pg_dump, pg_restore (hotspots db backup/restore)": f"/usr/lib/postgresql/{DEFAULT_MAJOR}/bin/pg_dump",
    "PostGIS (CREATE EXTENSION postgis)": f"/usr/share/postgresql/{DEFAULT_MAJOR}/extension/postgis.control",
    "chromium (browser tests, --png)": "/usr/bin/chromium",
    "QGIS's Python (tests/web/test_qgis.py)": "/usr/lib/python3/dist-packages/qgis/core/__init__.py",
}


def _dpkg(*args: str) -> str:
    return subprocess.run(["dpkg-query", *args], capture_output=True, text=True, check=True).stdout


def owner(path: str) -> str:
    """The Debian package that installed `path` (through symlinks and the merged /usr)."""
    real = os.path.realpath(path)
    for candidate in dict.fromkeys([path, real, *(re.sub(r"^/usr(/s?bin|/lib)", r"\1", p) for p in (path, real)),
                                    *("/usr" + p for p in (path, real) if not p.startswith("/usr"))]):
        done = subprocess.run(["dpkg-query", "-S", candidate], capture_output=True, text=True)
        if done.returncode == 0:
            return done.stdout.split(":", 1)[0].split(",")[0].strip()
    raise AssertionError(f"no Debian package holds {path}")


def installed_depends() -> dict[str, list[str]]:
    """Every installed package -> the packages it needs (Pre-Depends and Depends, first of each alternative)."""
    out = {}
    for line in _dpkg("-W", "-f", "${Package}\t${Pre-Depends}\t${Depends}\n").splitlines():
        name, pre, deps = (line.split("\t") + ["", ""])[:3]
        needs = []
        for clause in filter(None, (c.strip() for c in f"{pre},{deps}".split(","))):
            first = clause.split("|")[0].strip()
            needs.append(re.split(r"[\s(:]", first, maxsplit=1)[0])
        out[name] = needs
    return out


def closure(roots: set[str], depends: dict[str, list[str]]) -> set[str]:
    """`roots` and everything they depend on, transitively (over what this machine's package database knows)."""
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(depends.get(name, []))
    return seen


def script_packages(text: str) -> set[str]:
    """The packages scripts/setup-system.sh installs (its apt_install lines), with $major as Debian 12's default."""
    names = set()
    for args in re.findall(r"^\s*apt_install\s+(.+)$", text, flags=re.M):
        for word in args.split():
            names.add(word.strip("\"'").replace("$major", DEFAULT_MAJOR).replace("${major}", DEFAULT_MAJOR))
    return names


def readme_prerequisites(text: str) -> set[str]:
    """Packages the README tells a newcomer to install before `make` (its `apt-get install -y NAME` phrases)."""
    return {name for group in re.findall(r"apt-get install -y ((?:[a-z0-9.+-]+ ?)+)", text) for name in group.split()}


@pytest.fixture(scope="module")
def provided() -> set[str]:
    """What a fresh Debian 12 has after the README's prerequisite and the set-up script, dependencies included."""
    roots = set(MINIMAL_BOOKWORM) | script_packages(SCRIPT.read_text()) | readme_prerequisites(
        (REPO / "README.md").read_text())
    return closure(roots, installed_depends())


@pytest.mark.parametrize("what", sorted(NEEDED))
def test_everything_the_project_runs_is_installed_by_the_setup_or_named_by_the_readme(what, provided):
    package = owner(NEEDED[what])
    assert package in provided, (f"{what}: {NEEDED[what]} comes from Debian's {package}, which neither a minimal "
                                 "Debian 12, scripts/setup-system.sh nor the README's prerequisites install")


def test_the_script_names_real_packages_and_the_readme_names_make():
    names = script_packages(SCRIPT.read_text())
    assert {"python3-venv", f"postgresql-{DEFAULT_MAJOR}", f"postgresql-{DEFAULT_MAJOR}-postgis-3", "chromium",
            "python3-qgis", "qgis-providers"} <= names
    known = {line.split("\t")[0] for line in _dpkg("-W", "-f", "${Package}\t${Status}\n").splitlines()
             if "installed" in line}
    assert names <= known, f"not Debian 12 packages (or not installed by the script here): {sorted(names - known)}"
    assert readme_prerequisites((REPO / "README.md").read_text()) == {"make"}


def test_the_minimal_image_alone_lacks_what_the_setup_installs():
    # Without the script the check must fail: python3, make and PostgreSQL are not in a minimal image.
    bare = closure(set(MINIMAL_BOOKWORM), installed_depends())
    assert {owner(NEEDED[w]) for w in NEEDED} - bare >= {"make", "python3-minimal", "postgresql-15", "chromium"}


def test_the_dependency_reading_follows_alternatives_and_versions():
    depends = {"a": ["b", "c"], "b": ["d"], "c": [], "d": ["a"]}
    assert closure({"a"}, depends) == {"a", "b", "c", "d"}
    assert script_packages('apt_install "postgresql-$major-postgis-3"\n  apt_install python3-qgis qgis-providers\n') \
        == {"postgresql-15-postgis-3", "python3-qgis", "qgis-providers"}
    assert readme_prerequisites("install it first with `apt-get install -y make` (everything") == {"make"}


def test_the_setup_script_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
