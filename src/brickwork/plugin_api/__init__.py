"""What a plugin package may import besides :mod:`brickwork.contracts`.

A plugin is a class over the contracts (:class:`~brickwork.contracts.Plugin`,
its ``Input``/``Output`` models, prompts, policy); this module adds the hook
marker its package registers it with and helpers every text plugin needs, so
that no plugin imports the runtime or another plugin::

    from brickwork.plugin_api import hookimpl, pack, sentence_spans

    @hookimpl
    def register_plugins(register):
        register(MyPlugin)
"""

from brickwork.contracts.hooks import hookimpl
from brickwork.plugin_api.opening import Preamble, Quotes
from brickwork.plugin_api.segmentation import WORD, Span, pack, sentence_spans, words

__all__ = ["WORD", "Preamble", "Quotes", "Span", "hookimpl", "pack", "sentence_spans", "words"]
