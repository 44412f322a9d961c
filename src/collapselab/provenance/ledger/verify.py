"""Verification: recompute the chain, every record's hash and every snapshot's Merkle root, and name
each entry that was changed, removed, reordered or inserted. Pure: it works on the rows of all tables,
read in one transaction by :meth:`Ledger.verify`. It fails closed: a row it cannot read makes the
ledger invalid."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from collapselab.provenance import merkle
from collapselab.provenance.ledger.records import HEX64, KINDS, RECORDS, Garbled, chain_hash, entry_fields, read_int, read_str
from collapselab.provenance.ledger.schema import GENESIS, entries_table
from collapselab.provenance.sth import TreeHead, verify_head


@dataclass(frozen=True)
class Problem:
    """One thing :func:`verify` found wrong, at entry ``seq`` (None: not tied to one entry)."""

    seq: int | None
    kind: str | None
    what: str  # changed | removed | inserted | broken-chain | unreadable | merkle | reference | truncated | inconsistent | signature
    message: str

    def __str__(self) -> str:
        where = "ledger" if self.seq is None else f"entry {self.seq}" + (f" ({self.kind})" if self.kind else "")
        return f"{where}: {self.what}: {self.message}"


@dataclass
class VerifyReport:
    """What :func:`verify` found. ``ok`` only when there is not a single problem."""

    target: str
    entries: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS
    snapshots: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def bad_entries(self) -> set[int]:
        return {p.seq for p in self.problems if p.seq is not None}

    def __str__(self) -> str:
        if self.ok:
            return (f"{self.target}: valid ledger, {self.entries} entries, {self.snapshots} snapshot Merkle roots "
                    f"recomputed; head {self.head_seq} {self.head_hash}")
        lines = [f"{self.target}: INVALID ledger, {len(self.problems)} problem(s) in {self.entries} entries:"]
        lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)


def check_rows(label: str, tables: dict[str, list[dict]], expected_head: tuple[int, str] | None) -> VerifyReport:
    """Every check of :func:`verify`, on the rows of all tables (a table missing from ``tables`` is empty)."""
    report = VerifyReport(label)

    def problem(seq: Any, kind: Any, what: str, message: str) -> None:
        report.problems.append(Problem(seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
                                       kind if kind in KINDS else None, what, message))

    # Index every detail row, and every child row, by its entry's seq; a row whose seq cannot be
    # read is itself a problem.
    details: dict[str, dict[int, dict]] = {}
    children: dict[str, dict[int, list[dict]]] = {}
    for kind, cls in RECORDS.items():
        details[kind] = {}
        for row in tables.get(cls.table.name, []):
            try:
                details[kind][read_int(row, "seq")] = row  # type: ignore[index]
            except Garbled as e:
                problem(None, kind, "unreadable", f"a row of {cls.table.name}: {e}")
        children[kind] = {}
        if cls.children is not None:
            child_table, key = cls.children
            for row in tables.get(child_table.name, []):
                try:
                    children[kind].setdefault(read_int(row, key), []).append(row)  # type: ignore[arg-type]
                except Garbled as e:
                    problem(row.get(key), None, "unreadable", f"a row of {child_table.name}: {e}")
    entries: list[tuple[int, dict]] = []
    for row in tables.get(entries_table.name, []):
        try:
            entries.append((read_int(row, "seq"), row))  # type: ignore[arg-type]
        except Garbled as e:
            problem(None, None, "unreadable", f"a row of {entries_table.name}: {e}")
    entries.sort(key=lambda t: t[0])

    def kind_of_orphan(seq: int) -> str | None:
        return next((k for k in KINDS if seq in details[k]), None)

    # Walk the chain in sequence order.
    accounted: set[tuple[str, int]] = set()  # (kind, seq) of detail rows explained by an entry
    earlier: dict[str, dict[str, int]] = {k: {} for k in KINDS}  # key (hash, id, name) -> seq
    expected_seq, prev_hash, link_known = 1, GENESIS, True
    for seq, row in entries:
        kind = row.get("kind")
        if seq < 1:
            problem(seq, kind, "inserted", "sequence numbers start at 1")
            continue
        for gone in range(expected_seq, seq):  # a gap: these entries were removed
            orphan = kind_of_orphan(gone)
            if orphan:
                accounted.add((orphan, gone))
                problem(gone, orphan, "removed", "its entry is missing from ledger_entries (its record is still there)")
            else:
                problem(gone, None, "removed", f"missing: the sequence jumps from {expected_seq - 1} to {seq}")
            link_known = False
        expected_seq = seq + 1
        try:
            kind = read_str(row, "kind")
            if kind not in KINDS:
                raise Garbled(f"column kind holds {kind!r}, not one of {', '.join(KINDS)}")
            stored_prev = read_str(row, "prev_hash", hex64=True)
            stored_hash = read_str(row, "entry_hash", hex64=True)
        except Garbled as e:
            problem(seq, kind if kind in KINDS else kind_of_orphan(seq), "unreadable", str(e))
            link_known = False
            continue
        accounted.add((kind, seq))

        # The link to the previous entry (not judged right after a gap or an unreadable entry,
        # which are reported already).
        if link_known and stored_prev != prev_hash:
            problem(seq, kind, "broken-chain", f"its prev_hash is not entry {seq - 1}'s hash: an entry was "
                                               "rewritten, inserted, removed or reordered here")
        prev_hash, link_known = stored_hash, True

        # The entry's own fields.
        cls = RECORDS[kind]
        detail = details[kind].get(seq)
        if detail is None:
            problem(seq, kind, "removed", f"its {kind} record is missing from {cls.table.name}")
            continue
        try:
            record = cls.from_rows(seq, detail, children[kind].get(seq, []))
            recomputed = chain_hash(stored_prev, entry_fields(seq, record))  # type: ignore[arg-type]
        except (Garbled, ValueError, UnicodeError) as e:
            problem(seq, kind, "unreadable", str(e))
            continue
        if recomputed != stored_hash:
            problem(seq, kind, "changed", f"{record.describe()} no longer matches the entry's hash")
        report.snapshots += kind == "snapshot"
        for message in record.problems():
            problem(seq, kind, "merkle", message)
        for ref_kind, key in record.references():
            if key not in earlier[ref_kind]:
                problem(seq, kind, "reference", f"{record.describe()} refers to {ref_kind} {key!r}, which is not an earlier entry")
        earlier[kind][record.key] = seq

    # Rows no entry accounts for were inserted (or their entry was removed from the end).
    for kind, by_seq in details.items():
        for seq in sorted(by_seq):
            if (kind, seq) not in accounted:
                problem(seq, kind, "inserted", f"a {RECORDS[kind].table.name} row with no entry in ledger_entries")
    for kind, by_seq in children.items():
        for seq in sorted(by_seq):
            if (kind, seq) not in accounted:
                problem(seq, kind, "inserted", f"{RECORDS[kind].children[0].name} rows that belong to no {kind} entry")

    report.entries = len(entries)
    if entries:
        report.head_seq = entries[-1][0]
        report.head_hash = str(entries[-1][1].get("entry_hash"))
    if expected_head is not None:
        want_seq, want_hash = expected_head
        stored = dict(entries).get(want_seq, {}).get("entry_hash")
        if want_seq > report.head_seq:
            problem(want_seq, None, "truncated", f"the ledger ends at entry {report.head_seq}, but its recorded head is entry {want_seq}")
        elif want_seq > 0 and stored != want_hash:
            problem(want_seq, None, "changed", f"its hash is not the recorded head {want_hash}: the ledger was rewritten")
    report.problems.sort(key=lambda p: (p.seq is None, p.seq or 0))
    return report


def check_tree_head(report: VerifyReport, entry_rows: list[dict], sth: TreeHead, public_key: Any) -> None:
    """Add to ``report`` what keeps the ledger from extending ``sth``: a bad signature, fewer
    entries than the head counts (truncated), or a tree that is not an extension (inconsistent)."""
    def problem(what: str, message: str) -> None:
        report.problems.append(Problem(None, None, what, message))

    if public_key is not None and not verify_head(sth, public_key):
        why = "it is not signed" if not sth.signed else "its signature is not this key's"
        problem("signature", f"the tree head of {sth.tree_size} entries cannot be trusted: {why}")
    rows = sorted((r for r in entry_rows if isinstance(r.get("seq"), int) and isinstance(r.get("entry_hash"), str)
                   and HEX64.fullmatch(r["entry_hash"])), key=lambda r: r["seq"])
    leaves = [bytes.fromhex(r["entry_hash"]) for r in rows]
    if sth.tree_size > len(leaves):
        problem("truncated", f"the ledger has {len(leaves)} entries, but the tree head kept from earlier has {sth.tree_size}: "
                             "entries were cut off")
        return
    proof = merkle.consistency_proof(leaves, sth.tree_size)
    if not merkle.verify_consistency(sth.tree_size, len(leaves), bytes.fromhex(sth.root_hash),
                                     merkle.merkle_root(leaves), proof):
        problem("inconsistent", f"the ledger's first {sth.tree_size} entries do not give the root {sth.root_hash} of the "
                                "tree head kept from earlier: the ledger was rewritten")
