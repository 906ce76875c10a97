"""The tape: what the forward run records so the backward run can undo it.

A tape has one container per *site* (a place in the reversible form that records
something): branch bits, trip counts, or stashed values. Keeping sites apart makes the
per-line breakdown free and lets each site use compact storage: bits are packed 8 to a
byte, counts and stashed floats live in typed arrays (8 bytes each), anything else in a
list.
"""
from __future__ import annotations

import struct
import sys
from array import array

import numpy as np

from .backend import is_array
from .errors import TapeMismatchError


def _nbytes(value) -> int:
    """Payload size of a stashed value (what it would cost to keep a copy)."""
    if is_array(value):
        return value.nbytes
    if isinstance(value, (float, int, complex, bool, np.generic)):
        return 8 if not isinstance(value, complex) else 16
    if isinstance(value, (tuple, list)):
        return 8 * len(value) + sum(_nbytes(v) for v in value)
    return sys.getsizeof(value)


def _compact(counts: list):
    """Trip counts as an array('q') (8 bytes each) when they fit."""
    if counts and -2**63 <= min(counts) and max(counts) < 2**63:
        return array("q", counts)
    return counts


def bit_bytes(site, container) -> bytes:
    """The bits a forward run recorded at a bit site, one byte each: the container
    holds 0/1 ints, or a loop's bitmaps (bytearrays) for a `bitmap` site."""
    return b"".join(container) if site.bitmap else bytes(container)


def extend_floats(stack, values):
    """Move a list of Python floats into an array('d') stack and empty the list (one
    struct.pack converts them at a third of the cost of array.fromlist)."""
    stack.frombytes(struct.pack(f"{len(values)}d", *values))
    values.clear()


class Tape:
    """What one forward run recorded (`float_sites`: stash sites that received only
    Python floats, as a list to be packed). Read `nbits`, `ncounts`, `nstashed`, `nbytes` and
    `breakdown()`; pass the tape to `backward` (it can be used any number of times).

    The tape also keeps references (not copies) to the arguments of the call: the
    backward run gives back unchanged arguments as they are and restores changed arrays
    into the very objects the caller passed."""

    def __init__(self, owner, sites, containers, args, float_sites, backward_run):
        self.recorder = owner  # the Reversible whose forward run recorded this tape
        self.backward_run = backward_run  # the backward run that reads this recording
        self.sites = sites
        self.args = args
        self._bits = {}
        self._data = {}
        for site, container in zip(sites, containers):
            if site.kind == "bit":
                bits = bit_bytes(site, container)
                packed = np.packbits(np.frombuffer(bits, dtype=np.uint8))
                self._bits[site.index] = (len(bits), packed)
            elif site.kind == "count":
                self._data[site.index] = _compact(container)
            elif site.index in float_sites:  # a list of Python floats: pack it
                packed = array("d")
                extend_floats(packed, container)
                self._data[site.index] = packed
            else:
                self._data[site.index] = container  # array('d') of floats, or a list

    # ---- reading back

    def containers_for_backward(self, owner):
        """Fresh per-site stacks for one backward run (the tape itself is unchanged)."""
        if owner is not self.recorder:
            raise TapeMismatchError(
                "this tape was recorded by another function's forward run; pass the tape "
                "returned by the same reversible function's forward()")
        out = []
        for site in self.sites:
            if site.kind == "bit":
                n, packed = self._bits[site.index]
                out.append(np.unpackbits(packed, count=n).tolist())
            else:
                out.append(list(self._data[site.index]))
        return out

    # ---- accounting

    def _site_counts(self, site):
        if site.kind == "bit":
            n, packed = self._bits[site.index]
            return n, packed.nbytes
        data = self._data[site.index]
        if isinstance(data, array):
            return len(data), data.itemsize * len(data)
        return len(data), sum(_nbytes(v) for v in data)

    @property
    def nbits(self) -> int:
        """Branch bits recorded."""
        return sum(n for n, _ in self._bits.values())

    @property
    def ncounts(self) -> int:
        """Loop trip counts recorded."""
        return sum(len(self._data[s.index]) for s in self.sites if s.kind == "count")

    @property
    def nstashed(self) -> int:
        """Values stashed because they were overwritten without an inverse."""
        return sum(len(self._data[s.index]) for s in self.sites if s.kind == "stash")

    @property
    def nbytes(self) -> int:
        """Memory the tape's records take: packed bits, counts and stashed values."""
        return sum(self._site_counts(s)[1] for s in self.sites)

    def breakdown(self) -> dict:
        """Per source line: {'bits': n, 'counts': n, 'stashed': n, 'nbytes': n, 'why': [...]}."""
        out = {}
        for site in self.sites:
            n, nbytes = self._site_counts(site)
            row = out.setdefault(site.line, {"bits": 0, "counts": 0, "stashed": 0, "nbytes": 0,
                                             "why": []})
            key = {"bit": "bits", "count": "counts", "stash": "stashed"}[site.kind]
            row[key] += n
            row["nbytes"] += nbytes
            row["why"].append(site.text)
        return dict(sorted(out.items()))

    def __repr__(self):
        return (f"<Tape nbits={self.nbits} ncounts={self.ncounts} nstashed={self.nstashed} "
                f"nbytes={self.nbytes}>")
