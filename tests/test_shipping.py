"""Shipping: the Dockerfile, its build context, the wheel it builds, and docker-compose.yml.

No Docker daemon is needed: the build context is made here by applying .dockerignore to the
checkout, the builder stage's COPYs are replayed into a scratch folder, and the wheel is built
from that with pip, as the image build does. So a file the runtime needs but the context, the
COPYs or the package data leave out fails here, not in production.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ivr import instances
from ivr.db import upgrade
from ivr.settings import PROJECT_ROOT, DatabaseSettings, Settings
from ivr.tree import load_tree
from ivr.web import TWILIO_PATHS
from tests.conftest import make_settings

ROOT = PROJECT_ROOT
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|_KEY$|APIKEY", re.IGNORECASE)
# ${VAR} or ${VAR:?message} (required); a secret must come in as one of these, never as text.
REQUIRED_VAR = re.compile(r"^\$\{[A-Z_][A-Z0-9_]*:\?[^}]*\}$")


# -- .dockerignore, as Docker reads it ---------------------------------------------------


def _ignore_patterns() -> list[tuple[bool, str]]:
    patterns = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line[1:].strip() if negated else line
        patterns.append((negated, str(PurePosixPath(pattern.strip("/")))))
    return patterns


def _segment(pattern: str) -> str:
    """One path segment of a Go filepath.Match pattern as a regex (`*` never crosses `/`)."""
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[" and "]" in pattern[i + 1 :]:
            end = pattern.index("]", i + 1)
            body = pattern[i + 1 : end]
            out += "[" + ("^" + body[1:] if body[:1] in "!^" and body else body) + "]"
            i = end
        else:
            out += re.escape(c)
        i += 1
    return out


def _match(pattern: str, path: str) -> bool:
    """Go's filepath.Match per path segment, plus `**` for any number of segments."""
    segments = pattern.split("/")
    regex = ""
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == "**":
            regex += ".*" if last else "(?:.*/)?"
        else:
            regex += _segment(segment) + ("" if last else "/")
    return re.fullmatch(regex, path) is not None


def excluded(path: str, patterns: list[tuple[bool, str]] | None = None) -> bool:
    """Whether Docker leaves `path` out of the context: the last pattern matching the path or
    one of its parent folders decides (moby's patternmatcher.MatchesOrParentMatches)."""
    patterns = _ignore_patterns() if patterns is None else patterns
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for negated, pattern in patterns:
        if any(_match(pattern, c) for c in candidates):
            result = not negated
    return result


def _checkout_files() -> list[str]:
    skip = {".git", ".venv", ".mypy_cache", ".ruff_cache", ".pytest_cache", "node_modules"}
    found = []
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in skip or not path.is_file():
            continue
        found.append(rel.as_posix())
    return found


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The build context Docker would send: the checkout with .dockerignore applied."""
    target = tmp_path_factory.mktemp("context")
    patterns = _ignore_patterns()
    for rel in _checkout_files():
        if not excluded(rel, patterns):
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, target / rel)
    return target


def test_the_pattern_matcher_follows_docker() -> None:
    rules = [(False, "*"), (True, "ivr"), (False, "**/__pycache__"), (False, "**/*.sqlite3")]
    assert excluded("tests/test_web.py", rules)
    assert not excluded("ivr/web.py", rules)
    assert excluded("ivr/__pycache__/web.cpython-311.pyc", rules)
    assert excluded("ivr/sub/x.sqlite3", rules)
    assert not _match("*.sqlite3", "data/x.sqlite3")  # `*` never crosses a folder


@pytest.mark.parametrize(
    "path",
    [
        ".env",
        "ivr/.env",
        ".venv/bin/python",
        "ivr.sqlite3",
        "ivr.sqlite3-wal",
        "routes/scratch.sqlite3",
        ".git/config",
        "tests/test_web.py",
        "test-artifacts/queue.png",
        "ivr/__pycache__/web.cpython-311.pyc",
        "ivr.egg-info/PKG-INFO",
        "docker-compose.yml",
    ],
)
def test_context_leaves_out_secrets_and_local_state(path: str) -> None:
    assert excluded(path), f"{path} would be sent to the Docker daemon"


@pytest.mark.parametrize(
    "path",
    [
        "pyproject.toml",
        "README.md",  # pyproject's readme: the wheel build needs it
        "ivr/web.py",
        "ivr/templates/base.html",
        "ivr/static/dashboard.css",
        "migrations/env.py",
        "migrations/versions/0001_calls_call_events_tree_versions.py",
        "routes/hotline.yaml",
        "prompts/en.yaml",
    ],
)
def test_context_keeps_what_the_image_needs(path: str) -> None:
    assert not excluded(path), f"{path} is left out of the build context"


# -- the Dockerfile --------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for args in self.all("ENV"):
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                values[key] = value
        return values

    def copies(self) -> list[Copy]:
        """Each COPY with its destination made absolute (WORKDIR applied)."""
        out = []
        workdir = PurePosixPath("/")
        for kw, args in self.instructions:
            if kw == "WORKDIR":
                workdir = workdir / args.strip()
            if kw != "COPY":
                continue
            words = shlex.split(args)
            flags = [w for w in words if w.startswith("--")]
            paths = [w for w in words if not w.startswith("--")]
            origin = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
            sources, dest = paths[:-1], paths[-1]
            into = dest.endswith("/") or dest in (".", "..") or len(sources) > 1
            out.append(Copy(sources, workdir / dest, into, origin))
        return out


@dataclass
class Copy:
    sources: list[str]
    dest: PurePosixPath
    into: bool  # the destination is a folder that files go into by name
    origin: str | None  # --from=stage


def parse_dockerfile(text: str) -> list[Stage]:
    logical: list[str] = []
    buffer = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not buffer):
            continue
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        logical.append(buffer + line)
        buffer = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        elif stages:
            stages[-1].instructions.append((keyword, args.strip()))
        else:
            assert keyword == "ARG", f"{keyword} before the first FROM"
    return stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    found = parse_dockerfile(DOCKERFILE.read_text())
    assert len(found) >= 2, "a builder stage and a runtime stage"
    return found


def _exec_form(args: str) -> list[str]:
    assert args.startswith("["), f"exec form expected (no shell as PID 1): {args}"
    return list(yaml.safe_load(args))


def test_base_images_are_pinned_and_the_same(stages: list[Stage]) -> None:
    bases = {s.base for s in stages if s.base not in {t.name for t in stages}}
    assert len(bases) == 1, f"the venv is built and run on one Python: {bases}"
    base = bases.pop()
    image, _, tag = base.partition(":")
    assert image in {"python", "docker.io/library/python"}
    assert "$" not in base, "hadolint cannot check a base image named by an ARG"
    assert re.fullmatch(r"3\.\d+\.\d+-slim-\w+", tag) or "@sha256:" in base, base


def test_runtime_stage_runs_ivr_serve_unprivileged(stages: list[Stage]) -> None:
    runtime = stages[-1]
    users = runtime.all("USER")
    assert users, "the runtime stage must drop root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    command = _exec_form(runtime.all("ENTRYPOINT")[-1]) + _exec_form(runtime.all("CMD")[-1])
    assert command[:2] == ["ivr", "serve"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    port = command[command.index("--port") + 1]
    assert runtime.all("EXPOSE") == [port]
    (health,) = runtime.all("HEALTHCHECK")
    assert f"127.0.0.1:{port}/healthz" in health
    probe = _exec_form(health[health.index("CMD") + 3 :].strip())
    assert probe[0] == "python", "slim images have no curl"


def test_runtime_stage_has_graphviz_for_the_tree_page(stages: list[Stage]) -> None:
    """The dashboard's Tree page draws the tree with Graphviz's `dot`, and shows Mermaid text
    where it is missing: the image installs it, pinned like the base image, and keeps no apt
    lists behind."""
    [run] = [r for r in stages[-1].all("RUN") if "apt-get install" in r]
    assert re.search(r"apt-get install -y --no-install-recommends [^&]*\bgraphviz=\S+", run), run
    assert "rm -rf /var/lib/apt/lists/*" in run


def test_no_secret_is_baked_into_the_image(stages: list[Stage]) -> None:
    for stage in stages:
        for name in stage.env():
            assert not SECRET_NAME.search(name), f"ENV {name} in the image"
        for args in stage.all("ARG"):
            assert not SECRET_NAME.search(args.split("=")[0]), f"ARG {args}"
        for copy in stage.copies():
            assert not any(".env" in s or "sqlite3" in s for s in copy.sources)
    env = stages[-1].env()
    assert "TWILIO_AUTH_TOKEN" not in env and "IVR_SECRET_KEY" not in env


def test_copy_sources_are_in_the_build_context(stages: list[Stage], context: Path) -> None:
    names = {s.name for s in stages}
    for stage in stages:
        for copy in stage.copies():
            if copy.origin in names:
                continue
            for source in copy.sources:
                path = context / source
                assert path.exists(), f"COPY {source}: not in the build context"
                if path.is_dir():
                    assert any(p.is_file() for p in path.rglob("*")), f"COPY {source}: empty"


def _image_path(stage: Stage, context: Path, image_path: str) -> Path:
    """Where a file at `image_path` in the stage comes from in the build context."""
    target = PurePosixPath(image_path)
    for copy in reversed(stage.copies()):
        if copy.origin is not None or len(copy.sources) != 1:
            continue
        source = context / copy.sources[0]
        if source.is_dir() and (target == copy.dest or copy.dest in target.parents):
            return source / target.relative_to(copy.dest)
    raise AssertionError(f"{image_path} is not copied into the runtime stage")


def test_runtime_settings_find_the_copied_tree_prompts_and_migrations(
    stages: list[Stage], context: Path, tmp_path: Path
) -> None:
    """The package's defaults point into a source checkout (next to ivr/), which an installed
    wheel does not have: the image must set these, to files its COPYs put there."""
    runtime = stages[-1]
    env = runtime.env()
    for name in ("IVR_ROUTES", "IVR_PROMPTS", "IVR_MIGRATIONS"):
        assert env.get(name, "").startswith("/"), f"the image must set {name} (absolute)"
    routes = _image_path(runtime, context, env["IVR_ROUTES"])
    prompts = _image_path(runtime, context, env["IVR_PROMPTS"])
    migrations = _image_path(runtime, context, env["IVR_MIGRATIONS"])
    tree = load_tree(routes, prompts)  # what `ivr serve` loads first; raises on any error
    assert tree.tree.nodes
    assert (migrations / "env.py").is_file() and list((migrations / "versions").glob("*.py"))
    upgrade(f"sqlite:///{tmp_path / 'image.sqlite3'}", migrations=migrations)
    database = env.get("IVR_DATABASE_URL", "")
    assert not database or database.startswith("sqlite:////"), "a default holds no password"


def _can_build_wheels() -> bool:
    try:
        import setuptools
    except ImportError:
        return False
    version = tuple(int(p) for p in re.findall(r"\d+", setuptools.__version__)[:2])
    return version >= (70, 1) or importlib.util.find_spec("wheel") is not None


def test_the_builder_stage_builds_a_complete_wheel(
    stages: list[Stage], context: Path, tmp_path: Path
) -> None:
    """Replay the builder's COPYs and build the wheel the way it does; every file of the
    package (templates, static files, modules) must be in it, and the `ivr` command."""
    builder = stages[0]
    src = tmp_path / "src"
    workdir = PurePosixPath(builder.all("WORKDIR")[0])
    for copy in builder.copies():
        assert copy.origin is None
        dest = src / copy.dest.relative_to(workdir)
        for source in copy.sources:
            path = context / source
            if path.is_dir():  # a folder's contents go to the destination
                shutil.copytree(path, dest, dirs_exist_ok=True)
            else:
                target = dest / path.name if copy.into else dest
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
    wheels = tmp_path / "wheels"
    # Offline with this environment's setuptools when it can build wheels by itself (70.1+, or
    # the `wheel` package); otherwise pip fetches pyproject's build backend, as the image does.
    offline = ["--no-build-isolation"] if _can_build_wheels() else []
    built = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", *offline),
            *("--disable-pip-version-check", "--wheel-dir", str(wheels), str(src)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("ivr-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "ivr = ivr.cli:main" in zf.read(entry_points).decode()
    package = context / "ivr"
    expected = {p.relative_to(context).as_posix() for p in package.rglob("*") if p.is_file()}
    assert expected - names == set(), "in ivr/ but not in the wheel (package-data?)"
    assert any(n.startswith("ivr/templates/") for n in names)
    assert any(n.startswith("ivr/static/") for n in names)


# -- requirements.lock -----------------------------------------------------------------

LOCK = ROOT / "requirements.lock"


def _locked() -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", LOCK.read_text(), re.MULTILINE)
    return {canonicalize_name(name): version for name, version in pins}


def test_the_lock_pins_every_dependency_within_pyproject() -> None:
    """requirements.lock (scripts/lock) pins each of pyproject's dependencies to a release it
    allows, and the image installs exactly it: a dependency added or narrowed in pyproject
    without running scripts/lock fails here, not in a build."""
    locked = _locked()
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for line in declared:
        wanted = Requirement(line)
        name = canonicalize_name(wanted.name)
        assert name in locked, f"{wanted.name} is not in requirements.lock: run scripts/lock"
        assert wanted.specifier.contains(locked[name], prereleases=True), (
            f"requirements.lock pins {wanted.name}=={locked[name]}, outside {wanted.specifier}: "
            "run scripts/lock"
        )
        for extra in wanted.extras:  # uvicorn[standard]: its extra's packages pinned too
            for needed in metadata.requires(wanted.name) or []:
                more = Requirement(needed)
                if more.marker and more.marker.evaluate({"extra": extra}):
                    assert canonicalize_name(more.name) in locked, f"{more.name} ({line})"
    [install] = [c for c in _builder_runs() if "requirements.lock" in c]
    assert "-r requirements.lock" in install


def test_the_suite_runs_the_versions_the_image_ships() -> None:
    """scripts/test installs within the lock: every locked package installed here is of the
    locked version (what the tests passed on is what the image has)."""
    for name, version in _locked().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # a platform's alone (not this one's)
        assert installed == version, f"{name} {installed} installed, {version} locked"
    assert "-c requirements.lock" in (ROOT / "scripts" / "test").read_text()
    assert "-c requirements.lock" in (ROOT / "scripts" / "dev").read_text()


def _builder_runs() -> list[str]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    return [line for line in text.splitlines() if line.startswith("RUN ")]


def test_lint_docker_passes() -> None:
    result = subprocess.run(
        [str(ROOT / "scripts" / "lint-docker")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- docker-compose.yml ----------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, object]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _services(compose: dict[str, object]) -> dict[str, dict[str, object]]:
    services = compose["services"]
    assert isinstance(services, dict)
    return services


def _raw_environment(service: dict[str, object]) -> dict[str, str | None]:
    """A service's `environment` as written: None for a name given no value, which Compose
    takes from the shell or .env at run time (or leaves unset)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = {k: (v if eq else None) for k, eq, v in (str(i).partition("=") for i in env)}
    assert isinstance(env, dict)
    return {str(k): None if v is None else str(v) for k, v in env.items()}


def _environment(service: dict[str, object]) -> dict[str, str]:
    return {k: str(v) for k, v in _raw_environment(service).items()}


# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}: what the file uses.
COMPOSE_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?])([^}]*))?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """`value` as Compose interpolates it from the shell and the project's .env (`env`)."""

    def one(match: re.Match[str]) -> str:
        name, colon, kind, word = match.groups()
        given = env.get(name)
        unset = given is None or (colon == ":" and given == "")
        if kind == "?" and unset:
            raise AssertionError(f"Compose refuses to start: {word or name}")
        if kind == "-" and unset:
            return str(word)
        return given or ""

    return COMPOSE_VARIABLE.sub(one, value)


def container_environment(service: dict[str, object], env: dict[str, str]) -> dict[str, str]:
    """What the container's process finds: each value interpolated from the shell and .env
    (`env`); a name without a value takes theirs, or is left out when they have none."""
    found = {}
    for key, value in _raw_environment(service).items():
        if value is not None:
            found[key] = interpolate(value, env)
        elif key in env:
            found[key] = env[key]
    return found


def test_interpolate_follows_compose() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("${SET:-d}/${EMPTY:-d}/${EMPTY-d}/${UNSET-d}/${SET}", env) == "x/d//d/x"
    with pytest.raises(AssertionError, match="needed"):
        interpolate("${EMPTY:?needed}", env)


def test_compose_gives_the_operators_database_url_to_the_app_and_the_migration(
    compose: dict[str, object],
) -> None:
    """docs/production.md: "A PostgreSQL of your own works the same: set IVR_DATABASE_URL".
    Compose reads .env for interpolation; a literal URL under `environment` would beat the
    app's env_file, and the migration job reads no env_file at all: the operator's database
    would be silently ignored, and the bundled one migrated and served instead."""
    services = _services(compose)
    db = _environment(services["db"])
    required = {"POSTGRES_PASSWORD": "pw", "TWILIO_AUTH_TOKEN": "t", "IVR_PUBLIC_URL": "https://h"}
    own = "postgresql://ivr@10.0.0.5:5432/ivr"
    bundled = f"postgresql://{db['POSTGRES_USER']}@db:5432/{db['POSTGRES_DB']}"
    for name in ("migrate", "app"):
        environment = _environment(services[name])
        url = environment["IVR_DATABASE_URL"]
        assert interpolate(url, {**required, "IVR_DATABASE_URL": own}) == own, name
        assert interpolate(url, required) == bundled, name
        assert interpolate(url, {**required, "IVR_DATABASE_URL": ""}) == bundled, name


def test_compose_builds_the_dockerfile_for_migrate_and_app(compose: dict[str, object]) -> None:
    services = _services(compose)
    for name, command in (("migrate", ["db", "upgrade"]), ("app", None)):
        build = services[name]["build"]
        assert isinstance(build, dict)
        assert build.get("context") == "." and build.get("dockerfile", "Dockerfile") == "Dockerfile"
        if command:
            assert services[name]["command"] == command
    app = services["app"]
    assert app["command"][:1] in ([], ["serve"])  # type: ignore[index]
    assert any(str(p).endswith(":8000") for p in app["ports"])  # type: ignore[attr-defined]
    assert "/healthz" in str(app["healthcheck"])


def test_compose_starts_in_order(compose: dict[str, object]) -> None:
    services = _services(compose)
    assert services["app"]["depends_on"] == {
        "db": {"condition": "service_healthy"},
        "migrate": {"condition": "service_completed_successfully"},
    }
    assert services["migrate"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert services["migrate"].get("restart") == "no"


def test_compose_app_reads_the_checkouts_tree_and_prompts(
    compose: dict[str, object], stages: list[Stage]
) -> None:
    """A reload (POST /api/routes/reload, SIGHUP, IVR_WATCH_ROUTES) re-reads IVR_ROUTES and
    IVR_PROMPTS: without this checkout's folders mounted over the image's copies, it re-reads
    the file baked into the image, and an operator's edit never reaches a caller."""
    env = stages[-1].env()
    routes = PurePosixPath(env["IVR_ROUTES"])
    wanted = {routes.parent: "routes", PurePosixPath(env["IVR_PROMPTS"]): "prompts"}
    mounts = {}
    for volume in _services(compose)["app"].get("volumes") or []:  # type: ignore[attr-defined]
        source, _, rest = str(volume).partition(":")
        target, _, mode = rest.partition(":")
        mounts[PurePosixPath(target)] = (source, mode)
    for target, folder in wanted.items():
        assert target in mounts, f"nothing mounted at {target}: a reload reads the image's copy"
        source, mode = mounts[target]
        assert (ROOT / source).resolve() == ROOT / folder, f"{target} from {source}"
        assert mode == "ro", "the hotline only reads its tree"
    assert (ROOT / "routes" / routes.name).is_file(), f"IVR_ROUTES names {routes.name}"


def test_compose_postgres_is_pinned_checked_and_kept(compose: dict[str, object]) -> None:
    db = _services(compose)["db"]
    image = str(db["image"])
    assert re.fullmatch(r"postgres:\d+\.\d+(-\w+)?", image), f"pin the postgres tag: {image}"
    assert "pg_isready" in str(db["healthcheck"])
    (volume,) = db["volumes"]  # type: ignore[misc]
    name, _, mount = str(volume).partition(":")
    assert mount == "/var/lib/postgresql/data"
    assert name in (compose.get("volumes") or {}), "a named volume, not a host folder"


DATABASE_SETTINGS = {
    str(f.validation_alias) for f in DatabaseSettings.model_fields.values() if f.validation_alias
}


def test_compose_gives_the_migration_job_the_database_alone(compose: dict[str, object]) -> None:
    """The database commands' settings and libpq's password, nothing else: no env_file, so
    no Twilio token."""
    migrate = _services(compose)["migrate"]
    assert "env_file" not in migrate
    assert set(_environment(migrate)) == DATABASE_SETTINGS | {"PGPASSWORD"}
    app = _environment(_services(compose)["app"])
    assert {"IVR_DATABASE_URL", "PGPASSWORD", "TWILIO_AUTH_TOKEN", "IVR_PUBLIC_URL"} <= set(app)


def test_compose_gives_the_migration_job_every_setting_the_database_commands_read(
    compose: dict[str, object], stages: list[Stage], monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/production.md runs `users add`, `users token`, `db purge` and `calls ...` in the
    migrate job, which reads no env_file: a DatabaseSettings variable that .env sets but the
    job is not given is silently its default there (a 30-day IVR_TOKEN_DAYS makes 90-day
    tokens; IVR_RETENTION_DAYS=0, keep for ever, purges at 400 days)."""
    migrate = _services(compose)["migrate"]
    required = {"POSTGRES_PASSWORD": "pw", "TWILIO_AUTH_TOKEN": "t", "IVR_PUBLIC_URL": "https://h"}
    dotenv = {
        "IVR_DATABASE_URL": "postgresql://ivr@10.0.0.5:5432/ivr",
        "IVR_MIGRATIONS": "/srv/migrations",
        "IVR_TOKEN_DAYS": "30",
        "IVR_RETENTION_DAYS": "0",
        "IVR_RECORDING_RETENTION_DAYS": "3650",
        "IVR_DATABASE_POOLER": "transaction",
    }
    assert set(dotenv) == DATABASE_SETTINGS, "give each DatabaseSettings variable a value here"
    given = container_environment(migrate, {**required, **dotenv})
    for name, value in dotenv.items():
        assert given.get(name) == value, f"migrate: {name} in .env does not reach the job"
    # With none of them in .env, the job must still start: the code's defaults (or the image's
    # folder), never an empty value, which the settings refuse.
    for name in DATABASE_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    bare = container_environment(migrate, required)
    values: dict[str, Any] = {k: v for k, v in bare.items() if k in DATABASE_SETTINGS}
    settings = DatabaseSettings(_env_file=None, **values)
    assert settings.token_days == DatabaseSettings.model_fields["token_days"].default
    assert str(settings.migrations_dir) == stages[-1].env()["IVR_MIGRATIONS"]


def test_compose_believes_forwarded_headers_from_its_gateway_alone(
    compose: dict[str, object],
) -> None:
    """Not "*": any container on the network, or anyone once the port is opened, could claim
    any address and dodge the sign-in throttle. The proxy on the host comes from the fixed
    subnet's gateway."""
    trusted = _environment(_services(compose)["app"])["IVR_TRUSTED_PROXIES"]
    default = trusted.removeprefix("${IVR_TRUSTED_PROXIES:-").removesuffix("}")
    assert default != trusted and "*" not in default
    networks = compose["networks"]
    assert isinstance(networks, dict)
    [subnet] = networks["default"]["ipam"]["config"]
    assert default == subnet["gateway"]
    assert ipaddress.ip_address(default) in ipaddress.ip_network(subnet["subnet"])
    assert make_settings(IVR_TRUSTED_PROXIES=default).trusted_proxies == default


def test_compose_holds_no_secret(compose: dict[str, object]) -> None:
    for name, service in _services(compose).items():
        env_file = service.get("env_file")
        assert env_file in (None, ".env", [".env"]), f"{name}: env_file {env_file}"
        for key, value in _environment(service).items():
            if _raw_environment(service)[key] is None:
                continue  # from .env or the shell at run time: nothing written here
            if SECRET_NAME.search(key):
                assert REQUIRED_VAR.fullmatch(value), f"{name}: {key} must be ${{VAR:?...}}"
            if key.endswith("DATABASE_URL"):
                user_part = value.split("://", 1)[1].split("@", 1)[0]
                assert ":" not in user_part or "${" in user_part, f"{name}: password in URL"


def test_compose_and_docs_name_only_real_settings_and_paths() -> None:
    """Every IVR_* variable and /twilio/* path in the shipping files is one the code knows."""
    known = {str(f.validation_alias) for f in Settings.model_fields.values() if f.validation_alias}
    for path in (COMPOSE, DOCKERFILE, ROOT / "docs" / "production.md"):
        text = path.read_text()
        for variable in set(re.findall(r"\bIVR_[A-Z_]+\b", text)):
            assert variable in known, f"{path.name}: {variable} is not a setting"
        for route in set(re.findall(r"/twilio/[a-z-]+", text)):
            assert route in TWILIO_PATHS, f"{path.name}: {route} is not served"


def _section(text: str, heading: str) -> str:
    """The text under a Markdown heading, up to the next heading of its level or higher."""
    level = heading.split(" ", 1)[0]
    start = text.index(f"\n{heading}\n") + len(heading) + 2
    ends = [m.start() for m in re.finditer(rf"\n#{{1,{len(level)}}} ", text[start:])]
    return text[start : start + ends[0]] if ends else text[start:]


def test_scaling_lists_every_setting_once_as_shared_or_per_instance() -> None:
    """docs/scaling.md says which settings must match across instances and which may differ:
    a setting in neither list (or in both) leaves an operator of several instances guessing,
    and one added to Settings later must be placed in one of them."""
    text = (ROOT / "docs" / "scaling.md").read_text()
    shared_part = _section(text, "## What must be the same on every instance")
    differ = _section(text, "### What may differ")
    shared_part = shared_part[: shared_part.index("\n### What may differ\n")]
    name = re.compile(r"`((?:IVR|TWILIO)_[A-Z_]+)`")
    shared, own = set(name.findall(shared_part)), set(name.findall(differ))
    known = {str(f.validation_alias) for f in Settings.model_fields.values() if f.validation_alias}
    assert shared & own == set(), "listed as both shared and per instance"
    assert (shared | own) - known == set(), "not settings"
    assert known - (shared | own) == set(), "settings docs/scaling.md does not place"
    # What the instances compare (`ivr.instances`) is what the page says must match.
    assert own == instances.MAY_DIFFER, "ivr.instances.MAY_DIFFER is not the page's list"


# -- scripts/dev -----------------------------------------------------------------------


def test_dev_script_writes_env_for_its_user_alone(tmp_path: Path) -> None:
    """scripts/dev writes .env with the auth token (a real one, once a number is connected)
    and IVR_SECRET_KEY: under the usual umask 022 it would be readable by every user of the
    machine. Run on a copy of the script, with stand-ins for the venv's python (pip, the token)
    and `ivr` (keygen, serve), so nothing is installed or served."""
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy2(ROOT / "scripts" / "dev", checkout / "scripts" / "dev")
    venv = checkout / ".venv" / "bin"
    venv.mkdir(parents=True)
    stand_ins = {
        "python": 'case "$1" in -c) echo 0123456789abcdef0123456789abcdef;; esac',
        "ivr": 'case "$1" in keygen) echo a-fernet-key;; esac',
    }
    for name, body in stand_ins.items():
        (venv / name).write_text(f"#!/bin/sh\n{body}\nexit 0\n")
        (venv / name).chmod(0o755)
    ran = subprocess.run(
        ["bash", "-c", "umask 022 && exec scripts/dev"],
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    env = checkout / ".env"
    assert "TWILIO_AUTH_TOKEN=0123456789abcdef0123456789abcdef" in env.read_text()
    assert "IVR_SECRET_KEY=a-fernet-key" in env.read_text()
    assert oct(env.stat().st_mode & 0o777) == oct(0o600)
