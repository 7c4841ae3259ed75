"""What authentication costs: every request looks its credential up in the store (there is
no cache, so that a revoked token or an ended session stops at once on every replica), and
a login verifies an argon2id hash. ``--write`` replaces the blocks ``auth:*`` of
docs/benchmarks.md ("## Authentication"). No duration is asserted.

    .venv/bin/python bench/auth.py [--write] [--stores sqlite,postgres] [-n 2000]
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path

from harness import (
    finish,
    loadavg,
    machine_rows,
    measured,
    num,
    parser,
    pct,
    pg_version,
    scratch_database,
    setup_tables,
    table,
)
from skylight.identity import secrets
from skylight.operations import bootstrap, sessions
from skylight.store import Store, migrate
from skylight.store.engine import make_engine

PASSWORD = "bench-password"
LIMITS = sessions.Lifetimes(session_idle=3600.0, session_absolute=86400.0, token_max_ttl=None)


def _timed(fn: Callable[[], object], n: int) -> list[float]:
    """Seconds per call, ``n`` calls after as many warm-up calls."""
    for _ in range(min(n, 200)):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


@contextlib.contextmanager
def _store(kind: str, admin: str) -> Iterator[Store]:
    scratch = scratch_database(admin, "skylight_auth") if kind == "postgres" else nullcontext(None)
    with tempfile.TemporaryDirectory(prefix="skylight-auth-") as tmp, scratch as db:
        url = db or f"sqlite:///{Path(tmp) / 'auth.db'}"
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        store = Store(url)
        try:
            store.tx_sync(
                lambda c: bootstrap.ensure_recovery(
                    c, bootstrap.Recovery("recovery", "admin", PASSWORD, Path(tmp))
                )
            )
            yield store
        finally:
            store.engine.dispose()


def _credentials(store: Store) -> tuple[sessions.Credential, sessions.Credential]:
    """A console session and a device access token of the recovery admin, made the way the
    API makes them (the session by logging in, the token by the device flow)."""
    import asyncio

    session_token, caller = asyncio.run(sessions.login(store, "recovery", "admin", PASSWORD))
    auth = store.tx_sync(lambda c: sessions.device_auth(c, _CLIENT, None))
    store.tx_sync(lambda c: sessions.device_confirm(c, caller, auth.user_code))
    grant = store.tx_sync(
        lambda c: sessions.device_token(c, sessions.DEVICE_GRANT, _CLIENT, auth.device_code, LIMITS)
    )
    return sessions.Credential("session", session_token), sessions.Credential(
        "access_token", grant.token
    )


_CLIENT = "0190f2c3-0000-7000-8000-000000000001"


def run_store(kind: str, args: argparse.Namespace) -> list[list[object]]:
    with _store(kind, args.pg_admin) as store:
        cookie, token = _credentials(store)
        empty = _timed(lambda: store.tx_sync(lambda c: None), args.n)
        rows: list[tuple[str, list[float]]] = [("an empty transaction (for scale)", empty)]
        for what, cred in (("session cookie", cookie), ("access token", token)):

            def authenticate(cred: sessions.Credential = cred) -> object:
                return store.tx_sync(lambda c: sessions.authenticate(c, cred, LIMITS))

            spent = _timed(authenticate, args.n)
            rows.append((f"{what}: look up, check, load roles", spent))
        return [[kind, w, num(pct(s, 0.5) * 1e6), num(pct(s, 0.99) * 1e6)] for w, s in rows]


def main() -> None:
    p = parser(__doc__)
    p.add_argument("-n", type=int, default=2000, help="authentications per credential")
    p.add_argument("--logins", type=int, default=20, help="argon2id verifications timed")
    args = p.parse_args()
    load0 = loadavg()
    rows: list[list[object]] = []
    for kind in args.stores:
        rows += run_store(kind, args)
    stored = secrets.hash_password(PASSWORD)  # the default cost: what a real login pays
    verify = _timed(lambda: secrets.password_matches(stored, PASSWORD), args.logins)
    rows.append(
        [
            "any",
            "login: one argon2id verification (default cost)",
            num(pct(verify, 0.5) * 1e6),
            num(pct(verify, 0.99) * 1e6),
        ]
    )
    postgres = pg_version(args.pg_admin) if "postgres" in args.stores else None
    blocks = {
        "auth:results": [
            measured("auth.py"),
            "",
            *table(
                ["store", "per request", "median µs", "p99 µs"],
                "llrr",
                rows,
            ),
        ],
        "auth:setup": setup_tables(
            machine_rows(postgres=postgres, loads=[load0, loadavg()], shared="2 cores"),
            [("calls per credential", str(args.n)), ("argon2id verifications", str(args.logins))],
        ),
    }
    finish(blocks, args.write)


if __name__ == "__main__":
    main()
