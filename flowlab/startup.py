"""The start-up of a flowlab process (the ``flowlab`` command, a worker of ``flowlab check -n``): keep freed memory
in the process, discover the plugins, then freeze what start-up made.

glibc's malloc is told to keep what torch frees for reuse (:func:`flowlab.memory.keep_freed_memory`: a command's
large temporaries are otherwise given back to the kernel and faulted in again, a cost that varies from process to
process).

After discovery a process holds ~170 000 objects that the cyclic garbage collector tracks and that live until the
process exits: torch's modules, functions and classes, the plugins, the registry. Every full collection traverses
all of them (~0.08 s each, several times a minute in a kit run) and so does the interpreter's shutdown (~0.4 s).
``gc.freeze()`` moves them to the collector's permanent generation, which no collection looks at: the same objects
stay alive, and only what the command makes afterwards is collected. (What start-up made and already dropped is
collected first.) The library itself never freezes nor tunes malloc: a program that imports flowlab keeps its own
collector and allocator.
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Keep freed memory, discover the plugins (flows, checks, datasets, objectives), collect start-up's garbage,
    freeze the rest."""
    from flowlab.memory import keep_freed_memory
    from flowlab.registry import flows

    keep_freed_memory()
    flows()
    gc.collect()
    gc.freeze()
