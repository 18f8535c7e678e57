"""The ground truth, kept beside the service (never sent to it): each customer's
persona, and in live mode what was shown to whom and whether they bought. Scored
against: segments (adjusted Rand index of personas), experiments (planted lifts),
recommendations (held-out purchases). One JSON object a line."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import IO, Any

import orjson

from service.synthetic.population import Customer


class Truth:
    def __init__(self, path: Path, *, header: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: IO[bytes] = path.open("ab")
        self.personas: Counter[str] = Counter()
        self._write({"kind": "store", **header})

    def _write(self, row: dict[str, Any]) -> None:
        self._file.write(orjson.dumps(row, option=orjson.OPT_NAIVE_UTC) + b"\n")

    def customer(self, c: Customer) -> None:
        self.personas[c.persona] += 1
        self._write(
            {
                "kind": "customer",
                "user_id": c.user_id,
                "anonymous_id": c.anonymous_id,
                "persona": c.persona,
                "platform": c.platform,
                "email_domain": c.email.rsplit("@", 1)[1],
                "marketing_consent": c.marketing_consent,
                "first_visit": c.first_visit,
                "last_visit": c.last_visit,
            }
        )

    def exposure(self, **row: Any) -> None:
        self._write({"kind": "exposure", **row})

    def close(self) -> None:
        self._file.close()


def read(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line]
