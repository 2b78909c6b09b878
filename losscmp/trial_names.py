"""A trial's name as every line of losscmp shows it ('focal @ lr 0.001 · seed 1 · pets').

Plain text, no Rich: the console draws it on a running trial's line (``TrialLabel``,
which also shortens it to fit), the summary's notes and run.json's failed trials name
trials with it, so a reader meets one name for one trial whichever line it is on.
"""

from __future__ import annotations


def trial_text(
    loss: str,
    seed: int,
    lr: float | None = None,
    dataset: str | None = None,
    *,
    terse: int = 0,
    sole_seed: bool = False,
) -> str:
    """The trial's name: its loss spec, rate (where given), seed and dataset (where
    given). ``terse`` 1: ' s0' for ' · seed 0', or no seed where it is the run's only
    one (``sole_seed``); 2: '@ 0.001' for '@ lr 0.001' too."""
    rate = "" if lr is None else f" @ {'' if terse > 1 else 'lr '}{lr:g}"
    shown_seed = f" · seed {seed}"
    if terse:
        shown_seed = "" if sole_seed else f" s{seed}"
    shown_dataset = f" · {dataset}" if dataset is not None else ""
    return f"{loss}{rate}{shown_seed}{shown_dataset}"


def trial_name(
    loss: str, seed: int, lr: float | None, dataset: str, rates: int, datasets: int
) -> str:
    """A trial as the run's lines name it: loss and seed, its rate and dataset only where
    the run has several (``rates``, ``datasets``: how many)."""
    return trial_text(loss, seed, lr if rates > 1 else None, dataset if datasets > 1 else None)
