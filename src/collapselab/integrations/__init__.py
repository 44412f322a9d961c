"""Collapse Lab inside other data tools: dolma attribute files (:mod:`.dolma`) and datatrove
pipeline steps (:mod:`.datatrove`, needs the ``datatrove`` package)."""
