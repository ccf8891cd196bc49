"""The English names of the deployed processes and their elements, for the English UI.

Designers write BPMN names in Chinese, the officials' language. A process or element may
carry its English name as the property `nameEn` (`spiffworkflow:properties`, where
`formKey` and `dueDate` go too); the English pages show it instead of the Chinese name,
and the Chinese name where there is none. The shipped processes name every element an
official or auditor sees.

Names are looked up by process key and element id over every deployed version of the
process, the newest version's winning, so a case started on an old version still shows the
English names of elements its version had. A version never changes after its deployment:
each is read once, and a new deployment (by this process or another: the CLI, another web
worker) is noticed by the newest version id, one indexed read per catalogue asked for.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from sqlalchemy import func, select

from .bpmn import ENGLISH_NAME, english_names
from .models import ProcessVersion

log = logging.getLogger("gridflow.engine")


@dataclass(frozen=True)
class NameCatalogue:
    processes: dict[str, str] = field(default_factory=dict)   # process key -> English name
    # process key -> {element id: {its name: English name}}: a caller and the process it calls
    # may each have an element of one id (`start`), told apart by their names
    elements: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    # process key -> {name: English name}, for texts that kept only an element's name (a
    # reminder's notice); a name given two English names is left out
    by_name: dict[str, dict[str, str]] = field(default_factory=dict)

    def process(self, process_key: str | None, name: str | None) -> str | None:
        """The process's English name, else `name`."""
        return self.processes.get(process_key or "") or name

    def element(self, process_key: str | None, element_id: str | None, name: str | None) -> str | None:
        """The English name of the element `element_id` called `name` in that process's
        versions (or of the one element of that id, whatever its name was), else `name`."""
        english = self.elements.get(process_key or "", {}).get(element_id or "")
        if not english:
            return name
        if name in english:
            return english[name]
        return next(iter(english.values())) if len(set(english.values())) == 1 else name

    def named(self, process_key: str | None, name: str | None) -> str | None:
        """The English name of that process's element called `name`, else `name`."""
        return self.by_name.get(process_key or "", {}).get(name or "") or name


# content hash of a version's files -> their English names (`english_names`), for the process's life
_NAMES_BY_CONTENT: dict[str, list[tuple[str, str, str]]] = {}


class EnglishNames:
    def __init__(self, db):
        self.db = db
        self._lock = threading.Lock()
        # version id -> (process key, version number, process's English name, [(element id, name, English)])
        self._by_version: dict[int, tuple[str, int, str | None, list[tuple[str, str, str]]]] = {}
        self._newest: int | None = None
        self._catalogue = NameCatalogue()

    def catalogue(self) -> NameCatalogue:
        with self.db.read_session() as session:
            newest = session.scalar(select(func.max(ProcessVersion.id)))
            if newest == self._newest:
                return self._catalogue
            with self._lock:
                query = select(ProcessVersion.id, ProcessVersion.process_key, ProcessVersion.version,
                               ProcessVersion.properties, ProcessVersion.content_hash)
                if self._by_version:
                    query = query.where(ProcessVersion.id.not_in(list(self._by_version)))
                rows = session.execute(query).all()
                # a version's files are read only when no version with the same content was read
                # before, in this process: content never changes, and a worker or a test run
                # meets hundreds of versions whose files are the same few
                unread = [row.id for row in rows if row.content_hash not in _NAMES_BY_CONTENT]
                files = dict(session.execute(select(ProcessVersion.id, ProcessVersion.files)
                                             .where(ProcessVersion.id.in_(unread))).all()) if unread else {}
                for row in rows:
                    if row.content_hash not in _NAMES_BY_CONTENT:
                        try:
                            _NAMES_BY_CONTENT[row.content_hash] = english_names(files.get(row.id) or {})
                        except Exception:  # noqa: BLE001 -- a version's names are a nicety; its pages must still show
                            log.exception("could not read the English names of %s v%s", row.process_key, row.version)
                            _NAMES_BY_CONTENT[row.content_hash] = []
                    self._by_version[row.id] = (row.process_key, row.version,
                                                (row.properties or {}).get(ENGLISH_NAME),
                                                _NAMES_BY_CONTENT[row.content_hash])
                self._catalogue = self._build()
                self._newest = newest
        return self._catalogue

    def _build(self) -> NameCatalogue:
        """Every version's names, oldest first, so that a newer version's win."""
        processes: dict[str, str] = {}
        elements: dict[str, dict[str, dict[str, str]]] = {}
        by_name: dict[str, dict[str, str]] = {}
        for key, _version, process_name, names in sorted(self._by_version.values(), key=lambda v: (v[0], v[1])):
            if process_name:
                processes[key] = process_name
            mine = elements.setdefault(key, {})
            named, twice = {}, set()
            for element_id, name, english in names:
                mine.setdefault(element_id, {})[name] = english
                if name and named.setdefault(name, english) != english:
                    twice.add(name)
            by_name.setdefault(key, {}).update((name, english) for name, english in named.items() if name not in twice)
        return NameCatalogue(processes, elements, by_name)
