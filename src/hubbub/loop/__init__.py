"""Event-loop helpers shared by the layers: work batched per loop pass
(:mod:`~hubbub.loop.passes`) and stopping background tasks (:mod:`~hubbub.loop.tasks`)."""
