"""Cut encoded contacts into import request bodies of at most 4 MB and 40,000 contacts.

Constant Contact imports only the first 4 MB of a larger body and silently drops the rest, so the
bytes are counted exactly (limit: ``constants.MAX_IMPORT_BODY_BYTES``): ``{"import_data":[`` + contacts joined
by ``,`` + ``],"list_ids":[...]}``.
Contacts are packed greedily in order, which gives the fewest requests any in-order split can.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from airflow_provider_constantcontact.constants import MAX_IMPORT_BODY_BYTES, MAX_IMPORT_CONTACTS
from airflow_provider_constantcontact.exceptions import ConstantContactExportError
from airflow_provider_constantcontact.export.arrow_bytes import END, value_bytes


def envelope(list_ids: Sequence[str]) -> tuple[bytes, bytes]:
    """The bytes before and after the contacts of an import body."""
    ids = json.dumps(list(list_ids), separators=(",", ":"), ensure_ascii=False)
    return b'{"import_data":[', f'],"list_ids":{ids}}}'.encode()


@dataclass
class ImportBody:
    """One request body, ready to POST as is."""

    body: bytes
    contacts: int


class BodyBatcher:
    """Accumulates JSON-encoded contacts (a string array) and yields full bodies as they fill up."""

    def __init__(
        self,
        list_ids: Sequence[str],
        *,
        max_bytes: int = MAX_IMPORT_BODY_BYTES,
        max_contacts: int = MAX_IMPORT_CONTACTS,
    ) -> None:
        self.prefix, self.suffix = envelope(list_ids)
        self.max_contacts = max_contacts
        # Room for the contacts, each counted with the comma after it (one comma too many).
        self.capacity = max_bytes - len(self.prefix) - len(self.suffix) + 1
        self._pending: list[pa.Buffer] = []
        self._count = 0
        self._bytes = 0

    def add(self, contacts: pa.Array) -> Iterator[ImportBody]:
        """Queue ``contacts`` and yield every body that can no longer take the next contact."""
        if not len(contacts):
            return
        # Each contact followed by its comma, in one contiguous buffer: a body is then made of
        # zero-copy slices of such buffers (minus the very last comma) inside the envelope.
        contacts = pc.binary_replace_slice(contacts, start=END, stop=END, replacement=",")
        sizes = pc.binary_length(contacts).cast(pa.int64())
        largest = pc.max(sizes).as_py()
        if largest > self.capacity:
            raise ValueError(
                f"One contact encodes to {largest - 1} bytes, more than fits in a "
                f"{self.capacity + len(self.prefix) + len(self.suffix) - 1}-byte import body"
            )
        while len(contacts):
            room = min(self.max_contacts - self._count, len(contacts))
            cumulative = pc.cumulative_sum(sizes.slice(0, room))
            fit = int(pc.sum(pc.less_equal(cumulative, self.capacity - self._bytes)).as_py() or 0)
            if fit:
                self._pending.append(value_bytes(contacts.slice(0, fit)))
                self._count += fit
                self._bytes += int(cumulative[fit - 1].as_py())
                contacts, sizes = contacts.slice(fit), sizes.slice(fit)
            if len(contacts):
                yield self._take()

    def flush(self) -> Iterator[ImportBody]:
        """Yield the last, partly filled body (if any)."""
        if self._count:
            yield self._take()

    def _take(self) -> ImportBody:
        last = self._pending[-1]
        self._pending[-1] = last.slice(0, last.size - 1)  # the comma after the last contact
        body = b"".join((self.prefix, *self._pending, self.suffix))
        expected = len(self.prefix) + self._bytes - 1 + len(self.suffix)
        if len(body) != expected:  # the byte accounting is what keeps bodies under 4 MB: verify it
            raise ConstantContactExportError(
                f"import body is {len(body)} bytes, expected {expected} (a bug: please report)"
            )
        result = ImportBody(body, self._count)
        self._pending, self._count, self._bytes = [], 0, 0
        return result
