"""How the growth report packs its data into the page, and how to read it back. No Dagster here.

A year of 10,000 segments is 3.65 M days of three numbers each: as JSON that alone is tens of MB, and
Plotly is another 4.8 MB. So the heavy parts are embedded compressed, as text a <script type="text/plain">
element can hold, and unpacked by the page's own script with the browser's DecompressionStream:

- `pack` is gzip (deflate, the one format every current browser inflates natively) written in base-85 with
  an alphabet that has no `<`, `>`, `&`, quotes or backslash, so the text can never end or escape its
  element; base-85 costs 25 % over the bytes where base-64 costs 33 %.
- The daily series go in chunks of about CHUNK_DAYS segment-days, largest segments first, so picking a
  segment inflates one small chunk, not the whole year of every segment. `pack_chunk` lays a chunk out for
  deflate: three integer planes (each segment's days back to back), byte-shuffled (all low bytes, then all
  second bytes, ...) so the mostly-zero high bytes compress to almost nothing:
    total members as the residual of the day's own identity total = previous total + added - removed
    (zero on almost every day), net change (added - removed) and churn (min(added, removed)); added and
    removed follow exactly from net and churn. Each value zigzag-encoded (small negatives stay small).
  A mask byte per day says which of total, added, removed the mart holds (missing days are null, not 0),
  and a JSON part carries each segment's definition changes and anomalies.

`read_page` undoes all of it in Python (the page's script does the same in JavaScript), so what a page
holds can be checked without a browser.
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from typing import Any

import numpy as np

# about 3 MB of planes (0.5 MB packed) per chunk: a picked segment's chunk inflates in milliseconds, and a year of
# 10,000 segments is 14 chunks (each chunk is one scan of the daily mart)
CHUNK_DAYS = 1 << 18
# printable ASCII without " & ' < > \ ` / and space: 85 characters
ALPHABET = "".join(c for c in map(chr, range(0x21, 0x7F)) if c not in "\"&'<>\\`/=")
# which of a day's numbers the mart holds
HAS_TOTAL, HAS_ADDED, HAS_REMOVED = 1, 2, 4
_INT32 = (-(2**31), 2**31 - 1)

assert len(ALPHABET) == 85 and len(set(ALPHABET)) == 85


class ReportValueError(ValueError):
    """A number the report's compact encoding cannot hold (a member count beyond 2,147,483,647)."""


# ------------------------------------------------------------------------------------------------ base-85


def _base85(data: bytes) -> str:
    padded = data + b"\0" * (-len(data) % 4)
    words = np.frombuffer(padded, dtype=">u4").astype(np.uint64)
    digits = np.empty((len(words), 5), dtype=np.uint8)
    for place in range(4, -1, -1):
        digits[:, place] = words % 85
        words //= 85
    return np.frombuffer(ALPHABET.encode("ascii"), dtype=np.uint8)[digits].tobytes().decode("ascii")


def _unbase85(text: str, length: int) -> bytes:
    lookup = np.full(128, 255, dtype=np.uint8)
    lookup[np.frombuffer(ALPHABET.encode("ascii"), dtype=np.uint8)] = np.arange(85, dtype=np.uint8)
    digits = lookup[np.frombuffer(text.encode("ascii"), dtype=np.uint8)].astype(np.uint64).reshape(-1, 5)
    words = np.zeros(len(digits), dtype=np.uint64)
    for place in range(5):
        words = words * 85 + digits[:, place]
    return words.astype(">u4").tobytes()[:length]


def pack(data: bytes) -> tuple[str, int]:
    """gzip, then base-85: the text and the gzip's byte length (the page needs it to drop the padding)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: the gzip container DecompressionStream reads
    compressed = compressor.compress(data) + compressor.flush()
    return _base85(compressed), len(compressed)


def unpack(text: str, length: int) -> bytes:
    return zlib.decompress(_unbase85(text, length), 31)


# ------------------------------------------------------------------------------------------ series chunks


def _zigzag(values: np.ndarray, what: str) -> np.ndarray:
    if values.size and (values.min() < _INT32[0] or values.max() > _INT32[1]):
        raise ReportValueError(
            f"a segment's {what} is beyond ±2,147,483,647, which the report cannot show: check the segment's "
            "rows in marts.segment_growth_daily (Klaviyo reports no segment that large)"
        )
    return ((values << 1) ^ (values >> 63)).astype("<u4")


def _shuffled(plane: np.ndarray) -> bytes:
    return plane.view(np.uint8).reshape(-1, 4).T.tobytes()


def _planes(*columns: tuple[np.ndarray, str]) -> list[bytes]:
    return [_shuffled(_zigzag(np.asarray(values, dtype=np.int64), what)) for values, what in columns]


def pack_chunk(
    starts: np.ndarray,
    total: np.ndarray,
    added: np.ndarray,
    removed: np.ndarray,
    mask: np.ndarray,
    changes: list[list[list]],
    anomalies: list[list[list]],
) -> tuple[str, int]:
    """One chunk of segments, packed.

    Args:
        starts: the first index of each segment in the day arrays.
        total, added, removed: int64 day arrays of the chunk's segments back to back (0 where NULL).
        mask: HAS_TOTAL | HAS_ADDED | HAS_REMOVED of each day.
        changes: each segment's definition changes, [day index, text].
        anomalies: each segment's anomalies, [day index, kind, value, usual (baseline median), robust z].
    """
    for values, what in ((total, "total members"), (added, "members added"), (removed, "members removed")):
        _zigzag(values, what)  # each number itself fits, not only the derived ones
    previous = np.concatenate(([0], total[:-1]))
    previous[starts] = 0
    residual = total - previous - added + removed
    changes_json = json.dumps(changes, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    parts = [struct.pack("<I", len(changes_json)), changes_json, mask.astype(np.uint8).tobytes()]
    parts += _planes(
        (residual, "change of total members"),
        (added - removed, "net change"),
        (np.minimum(added, removed), "churn"),
    )
    # anomalies: a count per segment, then five planes; days as steps from the segment's previous anomaly,
    # the usual value doubled (a median of whole numbers ends in .0 or .5), the robust z in tenths
    rows = [row for segment in anomalies for row in segment]
    steps = [day - previous_day for segment in anomalies for day, previous_day in _with_previous(segment)]
    limit = _INT32[1] // 10
    parts += _planes(
        ([len(segment) for segment in anomalies], "anomaly count"),
        (steps, "anomaly day"),
        ([row[1] for row in rows], "anomaly kind"),
        ([row[2] for row in rows], "anomaly value"),
        ([round(2 * row[3]) for row in rows], "usual value"),
        ([round(10 * max(-limit, min(limit, row[4]))) for row in rows], "robust z"),
    )
    return pack(b"".join(parts))


def _with_previous(anomalies: list[list]) -> list[tuple[int, int]]:
    days = [row[0] for row in anomalies]
    return list(zip(days, [0, *days][: len(days)], strict=True))


class _Reader:
    """Reads a chunk's parts in the order pack_chunk wrote them."""

    def __init__(self, data: bytes, at: int) -> None:
        self.data, self.at = data, at

    def plane(self, count: int) -> np.ndarray:
        raw = np.frombuffer(self.data, dtype=np.uint8, count=4 * count, offset=self.at).reshape(4, count)
        self.at += 4 * count
        zigzag = raw.T.copy().view("<u4").ravel().astype(np.int64)
        return (zigzag >> 1) ^ -(zigzag & 1)


def unpack_chunk(text: str, length: int, days: list[int]) -> list[dict[str, Any]]:
    """The segments of one chunk: each {"total", "added", "removed"} (lists with None), "changes", "anomalies"."""
    data = unpack(text, length)
    (changes_length,) = struct.unpack_from("<I", data)
    changes = json.loads(data[4 : 4 + changes_length].decode("utf-8"))
    count = sum(days)
    mask = np.frombuffer(data, dtype=np.uint8, count=count, offset=4 + changes_length)
    reader = _Reader(data, 4 + changes_length + count)
    residual, net, churn = reader.plane(count), reader.plane(count), reader.plane(count)
    added, removed = churn + np.maximum(net, 0), churn + np.maximum(-net, 0)
    # total = previous total + added - removed + residual, the running sum restarting at each segment
    running = np.cumsum(residual + added - removed)
    starts = np.concatenate(([0], np.cumsum(days)[:-1])).astype(np.int64)
    before = np.where(starts > 0, running[np.maximum(starts - 1, 0)], 0)
    total = running - np.repeat(before, days)
    counts = reader.plane(len(days))
    steps, kinds, values, usual, z = (reader.plane(int(counts.sum())) for _ in range(5))

    def column(values: np.ndarray, flag: int, first: int, n: int) -> list[int | None]:
        return [int(v) if m & flag else None for v, m in zip(values[first : first + n], mask[first : first + n])]

    segments, row = [], 0
    for index, (first, n) in enumerate(zip(starts.tolist(), days, strict=True)):
        found, day = [], 0
        for at in range(row, row + int(counts[index])):
            day += int(steps[at])
            found.append([day, int(kinds[at]), int(values[at]), int(usual[at]) / 2, int(z[at]) / 10])
        row += int(counts[index])
        segments.append(
            {
                "total": column(total, HAS_TOTAL, first, n),
                "added": column(added, HAS_ADDED, first, n),
                "removed": column(removed, HAS_REMOVED, first, n),
                "changes": changes[index],
                "anomalies": found,
            }
        )
    return segments


# -------------------------------------------------------------------------------------------- a whole page

_ELEMENT = re.compile(
    r'<script id="(?P<id>[\w-]+)" type="(?P<type>[\w/]+)"(?P<attrs>[^>]*)>(?P<body>.*?)</script>', re.S
)


def page_elements(page: str) -> dict[str, tuple[dict[str, str], str]]:
    """The page's data elements by id: their data-* attributes and text."""
    found = {}
    for match in _ELEMENT.finditer(page):
        attrs = dict(re.findall(r'data-([\w-]+)="([^"]*)"', match["attrs"]))
        found[match["id"]] = (attrs, match["body"])
    return found


def read_page(page: str) -> dict[str, Any]:
    """Everything a growth report page holds, unpacked as its script unpacks it.

    Returns the page's small data (header facts, movers, recent anomalies) with "segments": each segment's
    summary (its "account" and "platform" by name) and its "total", "added", "removed" (one slot per day from
    "start", None where the mart has no number), "changes" ([day index, text]) and "anomalies" ([day index,
    metric, value, usual, robust z, reason]).
    """
    elements = page_elements(page)
    data = json.loads(elements["report-data"][1])
    attrs, text = elements["report-summary"]
    columns = json.loads(unpack(text, int(attrs["length"])))
    segments = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
    platforms = list(data.get("platforms", {}))
    for segment in segments:
        segment["account"] = data["accounts"][segment["account"]]
        if "platform" in segment:
            segment["platform"] = platforms[segment["platform"]]
    chunk = 0
    while f"report-chunk-{chunk}" in elements:
        attrs, text = elements[f"report-chunk-{chunk}"]
        members = [s for s in segments if s["chunk"] == chunk]
        for segment, unpacked in zip(members, unpack_chunk(text, int(attrs["length"]), [s["days"] for s in members])):
            kinds = data["anomaly_kinds"]
            unpacked["anomalies"] = [
                [day, *kinds[kind][:1], v, u, z, kinds[kind][1]] for day, kind, v, u, z in unpacked["anomalies"]
            ]
            segment.update(unpacked)
        chunk += 1
    data["segments"] = segments
    return data
