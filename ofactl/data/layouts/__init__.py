"""One reader per published corpus layout; :mod:`ofactl.data.corpora` is the public entry point.

``base`` holds the record types (:class:`~ofactl.data.layouts.base.Utterance`,
:class:`~ofactl.data.layouts.base.Problem`, :class:`~ofactl.data.layouts.base.Corpus`)
and the helpers the readers share; every other module here reads one layout and
exposes ``DESCRIPTION``, ``find_root(path)`` and ``read(path, *, split=None, ...)``.
"""
