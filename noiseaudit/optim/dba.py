r"""Dynamic Batch Adaptation: update with the subset of the batch whose gradients agree best.

After "Dynamic Batch Adaptation" (Simionescu, Stoica & Herscovici, arXiv:2208.00815): at each step
the per-sample gradients of the batch are examined and the update uses only the subset that
best improves a metric of those gradients, layer by layer. Here the metric is the *relative
gradient variance of the step*: with unit per-sample gradient directions :math:`u^l_i` of layer
:math:`l`, the variance of their mean over a subset :math:`S` of size :math:`m`, relative to the
mean's squared norm,

.. math:: V_l(S) = \frac{\frac{1}{m^2}\sum_{i\in S}\|u^l_i - \bar u^l_S\|^2}{\|\bar u^l_S\|^2}
                 = \frac{\operatorname{tr} \hat G^l_{SS}}{\mathbf 1^\top \hat G^l_{SS}\mathbf 1} - \frac1m,

summed over layers, where :math:`\hat G^l` is the cosine-normalised Gram matrix of layer
:math:`l`'s per-sample gradients. It is the noise-to-signal ratio of the averaged step: removing a
sample that pulls against the others lowers it, removing one that agrees raises it (fewer
samples, noisier mean), so the subset size follows from the data. Directions rather than raw
gradients are compared so that the large gradients of wrongly labelled samples cannot dominate
the mean. :func:`select_subset` removes samples greedily, each time the one whose removal lowers
:math:`\sum_l V_l` most, while that helps and at least ``min_keep`` of the batch remain; the
sums are updated in :math:`O(B)` per removal.

**No whole-network per-sample gradients.** The Gram matrices are those of the head and of the
last linear layer inside ``forward_features`` (if there is one), in closed form: a linear
layer's per-sample gradient is :math:`\delta_i \otimes [a_i, 1]` (output gradient times input
with a bias 1), so :math:`G = (\Delta\Delta^\top)\circ(\tilde A\tilde A^\top)`. The head's
:math:`\delta_i = p_i - y_i`; the hidden layer's comes from one ``autograd.grad`` through the
head only. Samples that a wrongly labelled minority drags against the rest are the ones
removed, so each sample's selection frequency (``dba_selected_frac``) is a detection signal.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from noiseaudit.optim.per_sample_rate import last_layer_gram  # any linear layer: (dd^T) o (aa^T + 1)


def cosine(gram: torch.Tensor) -> torch.Tensor:
    """A Gram matrix of unit vectors: G_ij / (|g_i| |g_j|)."""
    norms = gram.diagonal().clamp_min(1e-30).sqrt()
    return gram / norms[:, None] / norms[None, :]


def select_subset(grams: list[torch.Tensor], min_keep: int) -> torch.Tensor:
    """Greedy backward elimination minimising the summed noise-to-signal of the mean step; a (B,) bool mask."""
    b = grams[0].shape[0]
    keep = torch.ones(b, dtype=torch.bool, device=grams[0].device)
    if b <= max(min_keep, 2):
        return keep
    g = torch.stack([cosine(x.double()) for x in grams])  # (L, B, B)
    diag = g.diagonal(dim1=1, dim2=2)  # (L, B)
    rows = g.sum(dim=2)  # r_i = sum_{j in S} G_ij
    total, trace = rows.sum(dim=1), diag.sum(dim=1)  # 1'G1 and tr G over S
    m = b

    def score(t: torch.Tensor, tr: torch.Tensor, size: int) -> torch.Tensor:
        return (tr / t.clamp_min(1e-30) - 1.0 / size).sum(dim=0)

    current = score(total, trace, m)
    while m > max(min_keep, 2):
        # Removing k: 1'G1 -> total - 2 r_k + G_kk, tr -> tr - G_kk.
        t_new = total[:, None] - 2.0 * rows + diag
        tr_new = trace[:, None] - diag
        candidate = score(t_new, tr_new, m - 1).masked_fill(~keep, float("inf"))
        best = int(candidate.argmin())
        if not bool(candidate[best] < current):
            break
        keep[best] = False
        total, trace, current, m = t_new[:, best], tr_new[:, best], candidate[best], m - 1
        rows = rows - g[:, :, best]
    return keep


class DynamicBatchAdaptation:
    """Chooses, for each batch, which samples' gradients the update uses.

    Call :meth:`select` with the batch's per-sample losses, logits and head
    inputs after the forward pass; train on the returned mask. It hooks the
    last ``nn.Linear`` inside ``model.forward_features`` (if any) to read its
    input and output; the head's Gram matrix always counts.

    Parameters
    ----------
    model : nn.Module
        A model with ``forward_features`` and a linear ``head``.
    min_keep : float
        Smallest fraction of a batch that is kept, in (0, 1].
    """

    def __init__(self, model: nn.Module, min_keep: float = 0.25):
        if not 0.0 < min_keep <= 1.0:
            raise ValueError(f"min_keep must be in (0, 1], got {min_keep}")
        self.min_keep = min_keep
        self._seen: dict[str, torch.Tensor] = {}
        linears = [m for name, m in model.named_modules() if isinstance(m, nn.Linear) and not name.startswith("head")]
        self._handle = None
        if linears:
            self._handle = linears[-1].register_forward_hook(self._remember)

    def _remember(self, _module: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        if torch.is_grad_enabled():
            self._seen = {"input": args[0], "output": out, "version": out._version}

    def select(self, losses: torch.Tensor, logits: torch.Tensor, feats: torch.Tensor,
               targets: torch.Tensor) -> torch.Tensor:
        """A (B,) bool mask of the samples whose gradients the step should use."""
        with torch.no_grad():
            err = torch.softmax(logits.detach().float(), dim=1) - F.one_hot(targets, logits.shape[1]).float()
            grams = [last_layer_gram(err, feats.detach().float())]
        hidden = self._seen
        if hidden and hidden["output"].requires_grad:
            if hidden["output"]._version != hidden["version"]:
                raise RuntimeError("DBA needs the hidden Linear's output unmodified; use a ReLU that is not in place")
            (delta,) = torch.autograd.grad(losses.sum(), hidden["output"], retain_graph=True)
            with torch.no_grad():
                grams.append(last_layer_gram(delta.float().flatten(1), hidden["input"].detach().float().flatten(1)))
        self._seen = {}
        return select_subset(grams, max(1, int(self.min_keep * losses.shape[0])))

    def remove(self) -> None:
        """Detach the forward hook."""
        if self._handle is not None:
            self._handle.remove()
