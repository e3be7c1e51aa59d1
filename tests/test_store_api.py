"""The store's API: code outside digestbot.store gets plain values and statuses as enums, imports what
the package's __init__ exports, and neither SQLAlchemy nor a table nor a private name."""
from __future__ import annotations

import ast
import dataclasses
import sqlite3
from pathlib import Path

import pytest
from sqlmodel import SQLModel
from test_ledger import NOW, seed

import digestbot
import digestbot.store
from digestbot.models import Paper
from digestbot.store import DeliveryStatus, DigestRecord, DigestStatus, Ledger, SourceRecord, Store

PACKAGE = Path(digestbot.__file__).parent
STORE = PACKAGE / "store"
SQL_LIBRARIES = {"sqlalchemy", "sqlmodel", "alembic"}


def imports_outside_the_store() -> list[tuple[Path, str, list[str]]]:
    """(file, absolute module, imported names) of each `from X import ...` and `import X` in digestbot
    outside digestbot/store."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if STORE in path.parents:
            continue
        package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found += [(path, alias.name, []) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join(parts + ([node.module] if node.module else []))
                found.append((path, module, [alias.name for alias in node.names]))
    return found


def test_code_outside_the_store_imports_no_sql_library_no_table_and_no_private_name():
    for path, module, names in imports_outside_the_store():
        where = path.relative_to(PACKAGE.parent)
        assert module.split(".")[0] not in SQL_LIBRARIES, f"{where} imports {module}: only digestbot.store may"
        if module.startswith("digestbot.store"):
            assert module != "digestbot.store.tables", f"{where} imports the tables: the store hands out values"
            private = [name for name in names if name.startswith("_")]
            assert not private, f"{where} imports {private} from {module}"


def test_the_package_exports_every_name_code_outside_it_imports_from_it():
    submodules = {p.stem for p in STORE.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    wanted = {name for _, module, names in imports_outside_the_store() if module == "digestbot.store"
              for name in names if name not in submodules}
    assert wanted and not wanted - set(digestbot.store.__all__)
    assert all(hasattr(digestbot.store, name) for name in digestbot.store.__all__)


@pytest.fixture
def store(tmp_path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'api.db'}")
    store.create_tables()
    return store


def test_what_the_store_hands_out_are_frozen_values_with_enum_statuses(store):
    sent, failed, waiting = seed(store, 3)
    with store.write() as w:
        w.record_papers("src", [Paper(title="Another paper")], NOW)
        w.source_polled("src", NOW, seen=1, new=1)
    ledger = Ledger(store)
    claims = {claim.id: claim for claim in ledger.claim_batch(NOW)}
    assert claims[sent].subscription_id == "sub"
    ledger.sent(sent, "<digest-1@x>", NOW)
    ledger.failed(claims[failed], "550 no", NOW, permanent=True)
    ledger.close()  # gives the third back: pending

    records = store.digests()
    assert [(d.id, d.subscription_id, d.status) for d in records] == [
        (sent, "sub", DigestStatus.SENT), (failed, "sub", DigestStatus.FAILED), (waiting, "sub", DigestStatus.PENDING)]
    assert all(type(d) is DigestRecord and type(d.status) is DigestStatus for d in records)
    assert store.digests(DigestStatus.FAILED) == ledger.digests(DigestStatus.FAILED) == [records[1]]
    assert ledger.get(sent) == records[0] and records[0].message_id == "<digest-1@x>"
    assert records[0].sent_at == NOW and records[0].created.tzinfo is not None  # aware, as stored (UTC)
    with pytest.raises(dataclasses.FrozenInstanceError):
        records[0].status = DigestStatus.PENDING  # type: ignore[misc]

    [source] = store.source_states().values()
    assert type(source) is SourceRecord and (source.name, source.last_new, source.last_success) == ("src", 1, NOW)
    counts = store.delivery_counts()
    assert counts == {("email", DeliveryStatus.SENT): 1, ("email", DeliveryStatus.FAILED): 1,
                      ("email", DeliveryStatus.PENDING): 1}
    assert all(type(status) is DeliveryStatus for _, status in counts)

    handed_out = [*records, source, *ledger.counts().values(), *store.papers(), *store.matches_of("sub", (1,))]
    assert not [value for value in handed_out if isinstance(value, SQLModel)]


def test_the_database_holds_the_statuses_as_the_same_words_as_before_the_enums(store):
    """The enums changed no byte in the database: older versions and the indexes read the same text."""
    first, second = seed(store, 2)
    ledger = Ledger(store)
    claims = {c.id: c for c in ledger.claim_batch(NOW)}
    ledger.sent(first, "<m@x>", NOW)
    ledger.failed(claims[second], "550", NOW, permanent=True)
    ledger.close()
    db = sqlite3.connect(store.url.removeprefix("sqlite:///"))
    assert db.execute("SELECT status FROM digest ORDER BY id").fetchall() == [("sent",), ("failed",)]
    assert sorted(db.execute("SELECT status FROM delivery").fetchall()) == [("failed",), ("sent",)]
    assert [str(s) for s in DigestStatus] == ["pending", "sending", "sent", "failed", "empty", "cancelled"]
    assert [str(s) for s in DeliveryStatus] == ["pending", "sent", "failed", "cancelled"]
