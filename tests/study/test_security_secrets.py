"""Issue 19, item 3: a storage password is masked whatever its characters (``'``, ``@``, ``"``, spaces ...),
in every file, pickle and message of a sweep run against the real PostgreSQL, and workers get it out of band."""
from __future__ import annotations

import random
import string
import sys
import uuid
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
import yaml

from sweep.safety import redact_text
from sweep.study.storage import mask_url, split_password, with_password

sys.path.insert(0, str(Path(__file__).parents[1] / "apps"))
from runner import base_overrides, load, run_app  # noqa: E402

URL_LEGAL = "!$&'()*+,;=:"  # may stand raw in a URL's userinfo
PRINTABLE = string.ascii_letters + string.digits + string.punctuation + " "


def random_passwords(seed: int, n: int) -> list[str]:
    """Random printable passwords; every one holds a quote and an ``@`` (the characters that leaked)."""
    rng = random.Random(seed)
    return ["".join(rng.choice(PRINTABLE) for _ in range(rng.randint(6, 24))) + "'@\"x" for _ in range(n)]


def url_for(password: str, user: str = "u", host: str = "db.example:5432", raw: bool = False,
            database: str = "sweeps") -> str:
    """The URL a user writes: the password encoded where RFC 3986 requires it, or entirely raw."""
    secret = password if raw else quote(password, safe=URL_LEGAL)
    return f"postgresql://{user}:{secret}@{host}/{database}"


def forms(password: str) -> list[str]:
    """What a leak would write: the password itself or as it stands in the URL."""
    return sorted({password, quote(password, safe=URL_LEGAL), quote(password, safe="")}, key=len)


def hydra_quoted(value: str) -> str:
    """``value`` as a single-quoted Hydra override value (quotes escaped)."""
    return "'" + value.replace("'", "\\'") + "'"


@pytest.mark.parametrize("raw", [False, True])
def test_any_printable_password_is_split_and_masked(raw: bool) -> None:
    for password in random_passwords(seed=19 + raw, n=300):
        if raw:  # raw '?', '#', '%' would start a query, a fragment, an escape: every URL must encode them
            password = password.translate(str.maketrans("", "", "?#%"))
        url = url_for(password, raw=raw)
        bare, found = split_password(url)
        assert found == password, url
        assert bare == "postgresql://u@db.example:5432/sweeps"
        masked = mask_url(url)
        assert masked == "postgresql://u:***@db.example:5432/sweeps", url
        override = f"hydra.sweeper.storage={hydra_quoted(url)}"
        texts = [yaml.safe_dump({"storage": url, "overrides": [override]}), repr(url), override, f"err: {url}"]
        for text in texts:
            assert not [f for f in forms(password) if len(f) > 3 and f in redact_text(text)], text
        assert split_password(with_password(url))[1] == password  # what the driver connects with


@pytest.mark.parametrize(("url", "password"), [
    ("postgresql://u:a/b@h/db", "a/b"), ("postgresql://u:a@b/c@h:1/db", "a@b/c"), ("postgresql://u:p@h?x=1", "p"),
    ("postgresql://u:p@h/db?email=a@b.c", "p"), ("postgresql://u@h/db", None), ("sqlite:////x@y.db", None)])
def test_userinfo_runs_to_the_last_at_before_the_host(url: str, password: str | None) -> None:
    assert split_password(url)[1] == password


def test_a_raw_quote_in_the_password_is_masked() -> None:
    """The reported case, in a fresh process (nothing registered yet): the URL alone is enough."""
    import subprocess

    code = ("from sweep.study.storage import mask_url, split_password\n"
            "u = \"postgresql://u:Pw'Leak9x@h/db\"\n"
            "print(mask_url(u), split_password(u)[0])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["postgresql://u:***@h/db", "postgresql://u@h/db"]


def _role(base_url: str, database_url: str, password: str) -> str:
    """A login role with ``password`` owning the test's database; its URL (password encoded as a user would)."""
    import psycopg2
    from conftest import _admin_execute

    role = f"r_{uuid.uuid4().hex[:8]}"
    literal = password.replace("'", "''")
    try:
        _admin_execute(base_url, f"CREATE ROLE {role} LOGIN PASSWORD '{literal}'")
    except psycopg2.errors.InsufficientPrivilege:
        pytest.skip("needs a PostgreSQL role allowed to create roles")
    parts = urlsplit(database_url)
    _admin_execute(base_url, f'GRANT {role} TO "{parts.username}"')  # PostgreSQL 16: hand over only what we are
    _admin_execute(base_url, f'ALTER DATABASE "{parts.path.lstrip("/")}" OWNER TO {role}')
    return url_for(password, user=role, host=f"{parts.hostname}:{parts.port}", database=parts.path.lstrip("/"))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_random_password_nowhere_under_the_sweep_dir(seed: int, postgres_url: str, _postgres_base_url: str,
                                                     tmp_path: Path) -> None:
    """A sweep (pruning on: workers open the storage themselves) with a random printable password: the
    password is in no file or pickle under the sweep dir and in no line of stdout/stderr."""
    if "@" not in postgres_url or "options=" in postgres_url:
        pytest.skip("needs a PostgreSQL role allowed to create databases")
    password = random_passwords(seed, 1)[0]
    url = _role(_postgres_base_url, postgres_url, password)
    overrides = base_overrides(tmp_path, hydra_quoted(url))
    proc = run_app(*overrides, "+search_space=demo", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2",
                   "mode=prune", "hydra.sweeper.pruner.name=median", timeout=180)
    assert proc.returncode == 0, redact_text(proc.stderr[-3000:])
    assert len(load(url).get_trials()) == 2
    leaks = [(str(p), f) for p in tmp_path.rglob("*") if p.is_file() for f in forms(password)
             if f.encode() in p.read_bytes()]
    assert leaks == []
    assert [f for f in forms(password) if f in proc.stdout + proc.stderr] == []
    assert list((tmp_path / "out" / ".submitted").rglob("payload.pkl"))  # the pickles were looked into
