"""Hot reload: a new tree for new calls, the old one for calls in progress, never a bad one."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from ivr.db import audit_log, create_db_engine
from ivr.hotline import TreeRegistry
from ivr.phone import Answer, HangUp, Phone, Press, Prompt, ScriptedParty
from ivr.settings import PROJECT_ROOT, Settings
from ivr.tree import CompiledTree
from ivr.web import create_app
from tests.conftest import (
    HTTPS_CLIENT,
    PUBLIC_URL,
    TOKEN,
    FakeClock,
    bearer,
    make_settings,
    make_user,
)

OLD = "Main menu."
NEW = "Main menu, version two."


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    routes, prompts = tmp_path / "hotline.yaml", tmp_path / "prompts"
    shutil.copy(PROJECT_ROOT / "routes" / "hotline.yaml", routes)
    shutil.copytree(PROJECT_ROOT / "prompts", prompts)
    return routes, prompts


@pytest.fixture
def settings(database_url: str, files: tuple[Path, Path]) -> Settings:
    routes, prompts = files
    return make_settings(
        IVR_DATABASE_URL=database_url, IVR_ROUTES=str(routes), IVR_PROMPTS=str(prompts)
    )


@pytest.fixture
def reload_client(settings: Settings, db: Engine, clock: FakeClock) -> Iterator[TestClient]:
    with TestClient(create_app(settings, db=db, clock=clock), base_url=HTTPS_CLIENT) as c:
        yield c


@pytest.fixture
def operator(db: Engine) -> str:
    return make_user(db, "olga", "operator")


def retitle(prompts: Path) -> None:
    """An operator's edit: the main menu says something new."""
    en = prompts / "en.yaml"
    text = en.read_text()
    assert text.count("  main_menu: ") == 1
    en.write_text(
        text.replace("  main_menu: ", '  main_menu_old_unused: "x"\n  main_menu: ', 1).replace(
            '  main_menu_old_unused: "x"\n  main_menu: >-\n',
            f'  main_menu_old_unused: "x"\n  main_menu: >-\n    {NEW}\n',
            1,
        )
    )


def test_reload_new_calls_get_the_new_tree_calls_in_progress_keep_theirs(
    reload_client: TestClient,
    operator: str,
    files: tuple[Path, Path],
    check_twiml: Callable[[str], None],
) -> None:
    _, prompts = files
    phone = Phone(reload_client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
    before = reload_client.get("/healthz").json()["tree"]

    class EditsMidCall(ScriptedParty):
        def answer(self, prompt: Prompt) -> Answer:
            if len(self.answers) == 2:  # at the language prompt: the operator reloads
                retitle(prompts)
                response = reload_client.post("/api/routes/reload", headers=bearer(operator))
                assert response.status_code == 200, response.text
                self.reloaded = response.json()
            return super().answer(prompt)

    in_progress = EditsMidCall([Press("1"), Press("*")])
    old_call = phone.call(in_progress)
    new_call = phone.call(ScriptedParty([Press("1")]))
    assert in_progress.reloaded["version"] != before
    assert reload_client.get("/healthz").json()["tree"] == in_progress.reloaded["version"]
    assert not any(NEW in line for line in old_call.heard)  # its own version to the end
    assert any(NEW in line for line in new_call.heard)


def test_a_broken_tree_is_refused_and_the_old_one_stays_live(
    reload_client: TestClient,
    operator: str,
    files: tuple[Path, Path],
    check_twiml: Callable[[str], None],
) -> None:
    routes, _ = files
    before = reload_client.get("/healthz").json()["tree"]
    text = routes.read_text()
    routes.write_text(text.replace("target: emergency\n", "target: emergensy\n", 1))
    response = reload_client.post("/api/routes/reload", headers=bearer(operator))
    assert response.status_code == 422
    problems = response.json()["detail"]["problems"]
    # The shipped tree's warnings (its example official numbers) come with the one error.
    [error] = [p for p in problems if ": error: " in p]
    assert error.startswith(f"{routes}:") and "unknown node 'emergensy'" in error
    assert reload_client.get("/healthz").json()["tree"] == before
    phone = Phone(reload_client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
    assert phone.call(ScriptedParty([Press("1"), Press("1"), Press("*")])).queue == "security"


def test_a_refused_tree_is_said_even_when_its_audit_cannot_be_written(
    reload_client: TestClient, operator: str, files: tuple[Path, Path], db: Engine
) -> None:
    """The refusal's audit entry is written before the tree's error is answered: an audit
    log that cannot be written (a lock past its timeout, here a table gone) must not put a
    database error in the place of the file, line and node the operator needs."""
    routes, _ = files
    routes.write_text(routes.read_text().replace("target: emergency\n", "target: emergensy\n", 1))
    with db.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE audit_log RENAME TO audit_log_away")
    try:
        response = reload_client.post("/api/routes/reload", headers=bearer(operator))
    finally:
        with db.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE audit_log_away RENAME TO audit_log")
    assert response.status_code == 422
    assert any("unknown node 'emergensy'" in p for p in response.json()["detail"]["problems"])


def test_a_reload_logs_the_new_trees_warnings(
    reload_client: TestClient,
    operator: str,
    files: tuple[Path, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Reloaded by a file watch or SIGHUP, nobody reads the API's answer: the log says what
    the new tree's warnings are (a prompt Mandarin callers will hear in English)."""
    _, prompts = files
    zh = prompts / "zh-CN.yaml"
    lines = zh.read_text(encoding="utf-8").splitlines(keepends=True)
    zh.write_text("".join(x for x in lines if not x.startswith("  emergency_notice:")))
    with caplog.at_level("WARNING", logger="ivr.hotline"):
        response = reload_client.post("/api/routes/reload", headers=bearer(operator))
    assert response.status_code == 200, response.text
    logged = [r.getMessage() for r in caplog.records if r.name == "ivr.hotline"]
    assert any(
        "prompt 'emergency_notice' has no zh-CN translation" in m
        and m.startswith(f"call tree version {response.json()['version']}: ")
        for m in logged
    ), logged


def test_an_instance_started_on_the_live_version_leaves_it_as_the_database_says(
    settings: Settings,
    db: Engine,
    clock: FakeClock,
    files: tuple[Path, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`ivr serve` on a refused file serves the version the database said was live; at its
    start it must not make that version live again: another instance may have reloaded a
    newer one meanwhile. Started on its file, an instance makes the file live everywhere,
    and says which version that replaced (a rollback a restart undoes is not silent)."""
    from ivr.store import active_tree_version
    from ivr.tree import load_tree

    routes, prompts = files
    with TestClient(create_app(settings, db=db, clock=clock), base_url=HTTPS_CLIENT):
        pass
    with db.connect() as conn:
        first = active_tree_version(conn)
    retitle(prompts)
    newer = load_tree(routes, prompts)
    assert newer.version != first
    with TestClient(
        create_app(settings, tree=newer, db=db, clock=clock, make_live=False),
        base_url=HTTPS_CLIENT,
    ):
        pass
    with db.connect() as conn:
        assert active_tree_version(conn) == first
    assert "replaces version" not in caplog.text
    with (
        caplog.at_level(logging.WARNING, logger="ivr.hotline"),
        TestClient(create_app(settings, tree=newer, db=db, clock=clock), base_url=HTTPS_CLIENT),
    ):
        pass
    with db.connect() as conn:
        assert active_tree_version(conn) == newer.version
    [said] = [r.getMessage() for r in caplog.records if "replaces version" in r.getMessage()]
    assert said.startswith(f"the tree file's version {newer.version} replaces version {first}")
    assert "(startup)" in said


def test_versions_and_rollback(
    reload_client: TestClient,
    db: Engine,
    operator: str,
    files: tuple[Path, Path],
    clock: FakeClock,
    check_twiml: Callable[[str], None],
) -> None:
    _, prompts = files
    first = reload_client.get("/healthz").json()["tree"]
    settings = reload_client.app.state.hotline.settings  # type: ignore[attr-defined]
    with TestClient(create_app(settings, db=db, clock=clock), base_url=HTTPS_CLIENT) as other:
        clock.advance(minutes=1)
        retitle(prompts)
        reloaded = reload_client.post("/api/routes/reload", headers=bearer(operator))
        second = reloaded.json()["version"]
        versions = reload_client.get("/api/routes/versions", headers=bearer(operator)).json()
        # Asked through the balancer, another instance answers before it has followed the
        # reload (IVR_TREE_SYNC): the live version is the database's, not the one it serves.
        seen = other.get("/api/routes/versions", headers=bearer(operator)).json()
    assert [(v["version"], v["live"], v["served_here"]) for v in versions] == [
        (second, True, True),
        (first, False, False),
    ]
    assert versions[0]["activated_by"] == "operator:olga"
    assert [(v["version"], v["live"], v["served_here"]) for v in seen] == [
        (second, True, False),
        (first, False, True),
    ]
    back = reload_client.post(
        "/api/routes/rollback", headers=bearer(operator), json={"version": first}
    )
    assert back.status_code == 200 and back.json()["version"] == first
    phone = Phone(reload_client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
    assert not any(NEW in line for line in phone.call(ScriptedParty([Press("1")])).heard)
    unknown = reload_client.post(
        "/api/routes/rollback", headers=bearer(operator), json={"version": "0" * 16}
    )
    assert unknown.status_code == 404


def test_only_operators_reload(reload_client: TestClient, db: Engine) -> None:
    agent, supervisor = make_user(db, "a", "agent"), make_user(db, "s", "supervisor")
    assert reload_client.post("/api/routes/reload").status_code == 401
    for token in (agent, supervisor):
        assert reload_client.post("/api/routes/reload", headers=bearer(token)).status_code == 403
    assert reload_client.get("/api/routes/versions", headers=bearer(supervisor)).status_code == 200
    assert reload_client.get("/api/routes/versions", headers=bearer(agent)).status_code == 403


def test_every_instance_follows_the_live_version(
    settings: Settings,
    database_url: str,
    clock: FakeClock,
    files: tuple[Path, Path],
    operator: str,
) -> None:
    _, prompts = files
    one_db, two_db = create_db_engine(database_url), create_db_engine(database_url)
    one, two = (
        create_app(settings, db=one_db, clock=clock),
        create_app(settings, db=two_db, clock=clock),
    )
    try:
        with (
            TestClient(one, base_url=HTTPS_CLIENT) as first,
            TestClient(two, base_url=HTTPS_CLIENT) as second,
        ):
            retitle(prompts)
            new = first.post("/api/routes/reload", headers=bearer(operator)).json()["version"]
            assert second.get("/healthz").json()["tree"] != new
            two.state.hotline.follow_active_version()  # what its background loop does
            assert second.get("/healthz").json()["tree"] == new
    finally:
        one_db.dispose()
        two_db.dispose()


def test_the_registry_keeps_the_versions_used_lately_and_rebuilds_an_older_one(
    db: Engine, hotline_tree: CompiledTree
) -> None:
    """A day of reloads on an incident must not grow the process: the live version and the
    ones calls used lately stay built; a call on an older one gets it rebuilt from the
    database, as after a restart."""
    from ivr import store
    from ivr.hotline import TreeRegistry

    with db.connect() as conn:
        store.store_tree_version(conn, tree=hotline_tree, loaded_by="test", now=FakeClock().now)
    first = hotline_tree.version
    registry = TreeRegistry(hotline_tree, keep=3)
    for n in range(1, 4):
        registry.set_current(dataclasses.replace(hotline_tree, version=f"v{n}"))
    assert [registry.has(v) for v in (first, "v1", "v2", "v3")] == [False, True, True, True]
    registry.get("v1", db)  # a call on v1 took a step: kept before v2
    registry.set_current(dataclasses.replace(hotline_tree, version="v4"))
    assert [registry.has(v) for v in ("v1", "v2", "v3", "v4")] == [True, False, True, True]
    assert registry.current.version == "v4"
    rebuilt = registry.get(first, db)  # from the stored text
    assert rebuilt.version == first and rebuilt is not hotline_tree
    assert registry.has(first) and registry.has("v4") and not registry.has("v3")


class WatchedRegistry(TreeRegistry):
    """The hotline's registry, noting which thread rebuilt a version it no longer held."""

    def __init__(self, current: CompiledTree, keep: int) -> None:
        super().__init__(current, keep)
        self.rebuilt_on: list[str] = []

    def get(self, version: str, db: Engine) -> CompiledTree:
        if not self.has(version):
            self.rebuilt_on.append(threading.current_thread().name)
        return super().get(version, db)


def test_a_hang_up_on_a_tree_version_no_longer_held_rebuilds_it_off_the_event_loop(
    client: TestClient, phone: Phone, hotline_tree: CompiledTree
) -> None:
    """A caller listens to the main menu through a morning of reloads, and their version is
    evicted; they hang up there (no Gather action, only the status callback), which needs
    it again: rebuilt in a worker thread (a second for the shipped tree), never on the loop
    every call is answered on."""
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    registry = WatchedRegistry(hotline.trees.current, keep=2)
    hotline.trees = registry

    def answered(choice: object) -> None:
        if isinstance(choice, HangUp):  # two reloads meanwhile: theirs is evicted
            for n in (1, 2):
                registry.set_current(dataclasses.replace(hotline_tree, version=f"reloaded-{n}"))

    phone.call(ScriptedParty([Press("1"), HangUp()], on_answer=answered))
    assert registry.rebuilt_on, "the hang-up did not need the caller's version"
    assert all(name.startswith("AnyIO worker thread") for name in registry.rebuilt_on), (
        registry.rebuilt_on
    )


def tree_audit(db: Engine) -> list[tuple[str, str, str, str]]:
    with db.connect() as conn:
        rows = conn.execute(
            select(audit_log.c.actor, audit_log.c.action, audit_log.c.reason, audit_log.c.result)
            .where(audit_log.c.action.in_(("tree_activated", "tree_refused")))
            .order_by(audit_log.c.id)
        ).all()
    return [tuple(r) for r in rows]


def test_every_activation_and_refusal_is_audited_though_versions_keep_only_the_last(
    reload_client: TestClient,
    operator: str,
    settings: Settings,
    db: Engine,
    files: tuple[Path, Path],
    clock: FakeClock,
) -> None:
    """tree_versions keeps each version's last activation only: a reload, a rollback and a
    restart onto the file leave the first version's reload-time activation overwritten. The
    audit log keeps each, and each reload refused. The first start on a new database is the
    first version's loaded_at, and not audited."""
    routes, prompts = files
    first = reload_client.get("/healthz").json()["tree"]
    assert tree_audit(db) == []
    clock.advance(minutes=1)
    retitle(prompts)
    second = reload_client.post("/api/routes/reload", headers=bearer(operator)).json()["version"]
    clock.advance(minutes=1)
    back = reload_client.post(
        "/api/routes/rollback", headers=bearer(operator), json={"version": first}
    )
    assert back.status_code == 200
    text = routes.read_text()
    routes.write_text(text.replace("target: emergency\n", "target: emergensy\n", 1))
    assert reload_client.post("/api/routes/reload", headers=bearer(operator)).status_code == 422
    routes.write_text(text)  # mended; a restart makes the file (the second version) live
    with TestClient(create_app(settings, db=db, clock=clock), base_url=HTTPS_CLIENT):
        pass
    with TestClient(create_app(settings, db=db, clock=clock), base_url=HTTPS_CLIENT):
        pass  # a restart onto the live version changes nothing: not audited
    file = str(routes)
    [reload, rollback, refused, start] = tree_audit(db)
    assert reload == (
        "operator:olga",
        "tree_activated",
        f"reload: version {second} ({file}), was {first}",
        "ok",
    )
    assert rollback == (
        "operator:olga",
        "tree_activated",
        f"rollback: version {first} ({file}), was {second}",
        "ok",
    )
    assert refused[:2] == ("operator:olga", "tree_refused") and refused[3] == "refused"
    assert refused[2].startswith(f"reload: {routes}:") and "unknown node 'emergensy'" in refused[2]
    assert "\n" not in refused[2]
    assert start == (
        "system:startup",
        "tree_activated",
        f"start: version {second} ({file}), was {first}",
        "ok",
    )
