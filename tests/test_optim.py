"""The per-sample rate optimizer: sparse updates, clamps, state round-trip, and the hypergradient."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from noiseaudit.optim import (
    PerSampleRate,
    class_conditional_alignment,
    class_reference_update,
    last_layer_gram,
    per_sample_rate_step,
    probability_margin,
    reference_alignment,
    reference_cosines,
    reference_dots,
    with_bias,
)


def _batch(seed: int = 0, b: int = 12, k: int = 3, d: int = 5):
    g = torch.Generator().manual_seed(seed)
    feats = torch.rand(b, d, generator=g, dtype=torch.float64)
    labels = torch.arange(b) % k
    weight = torch.randn(k, d, generator=g, dtype=torch.float64) * 0.5
    bias = torch.randn(k, generator=g, dtype=torch.float64) * 0.1
    return feats, labels, weight, bias


def _train_step(head, rates, opt, feats, labels, idx):
    """One weighted step of the base optimizer, then the rate update from the same forward pass."""
    logits = head(feats[idx])
    loss = rates.weighted_loss(F.cross_entropy(logits, labels[idx], reduction="none"), idx)
    opt.zero_grad()
    loss.backward()
    opt.step()
    rates.step(idx, logits, feats[idx], labels[idx])


def _per_sample_grads(feats, labels, weight, bias):
    rows = []
    for i in range(feats.shape[0]):
        w, b = weight.clone().requires_grad_(), bias.clone().requires_grad_()
        F.cross_entropy(feats[i:i + 1] @ w.T + b, labels[i:i + 1]).backward()
        rows.append(torch.cat([w.grad.flatten(), b.grad]))
    return torch.stack(rows)


def test_gram_matches_explicit_per_sample_gradients():
    feats, labels, weight, bias = _batch()
    err = torch.softmax(feats @ weight.T + bias, 1) - F.one_hot(labels, 3).double()
    grads = _per_sample_grads(feats, labels, weight, bias)
    torch.testing.assert_close(last_layer_gram(err, feats), grads @ grads.T)


def test_hypergradient_matches_autograd_through_one_sgd_step():
    """dM_i(theta - alpha * grad L(eta)) / d eta_i == -(alpha/B) * raw alignment_i, to first order in alpha."""
    feats, labels, weight, bias = _batch(seed=1)
    b, alpha = feats.shape[0], 1e-6
    eta = torch.ones(b, dtype=torch.float64, requires_grad=True)
    w, c = weight.clone().requires_grad_(), bias.clone().requires_grad_()
    losses = F.cross_entropy(feats @ w.T + c, labels, reduction="none")
    gw, gc = torch.autograd.grad((eta * losses).mean(), (w, c), create_graph=True)
    w2, c2 = w - alpha * gw, c - alpha * gc
    after = F.cross_entropy(feats @ w2.T + c2, labels, reduction="none")
    err = torch.softmax(feats @ weight.T + bias, 1) - F.one_hot(labels, 3).double()
    raw, has = class_conditional_alignment(err, feats, labels, normalize=False)
    assert has.all()
    for i in range(b):
        same = (labels == labels[i]) & (torch.arange(b) != i)
        meta = after[same].mean()
        (hyper,) = torch.autograd.grad(meta, eta, retain_graph=True)
        assert math.isclose(hyper[i].item(), -alpha / b * raw[i].item(), rel_tol=1e-4, abs_tol=1e-14)


def test_reference_dots_equal_explicit_per_sample_gradients_for_every_class():
    gen = torch.Generator().manual_seed(7)
    err, feats1 = torch.randn(6, 4, generator=gen), torch.randn(6, 5, generator=gen)
    reference = torch.randn(3, 4, 5, generator=gen)
    explicit = torch.einsum("bk,bd,ckd->bc", err, feats1, reference)  # g_i = e_i (x) h_i, dotted with R_c
    torch.testing.assert_close(reference_dots(err, feats1, reference), explicit)
    classes = torch.tensor([2, 0, 1, 1, 0, 2])
    cos = reference_alignment(err, feats1, reference, classes)
    g = err[:, :, None] * feats1[:, None, :]
    expected = F.cosine_similarity(g.flatten(1), reference[classes].flatten(1), dim=1)
    torch.testing.assert_close(cos, expected)
    every = F.cosine_similarity(g.flatten(1)[:, None, :], reference.flatten(1)[None, :, :], dim=2)
    torch.testing.assert_close(reference_cosines(err, feats1, reference), every)


def test_rate_kernel_without_mask_equals_all_valid_mask():
    gen = torch.Generator().manual_seed(3)
    alignment, index = torch.randn(5, generator=gen), torch.tensor([4, 0, 7, 2, 9])
    a, b = torch.zeros(10), torch.zeros(10)
    kernel = dict(hyper_lr=0.3, log_min=-0.2, log_max=0.2)
    per_sample_rate_step(a, index, alignment, None, **kernel)
    per_sample_rate_step(b, index, alignment, torch.ones(5, dtype=torch.bool), **kernel)
    torch.testing.assert_close(a, b)
    expected = (0.3 * (alignment - alignment.mean())).clamp(-0.2, 0.2)
    torch.testing.assert_close(a[index], expected)
    assert (a[[1, 3, 5, 6, 8]] == 0).all()  # absent samples never move


def test_reference_hypergradient_matches_autograd():
    """d/d eta_i of the reference meta-objective sum_j w_j l_j(theta+)/|g_j| == -(alpha/B) g_i . R_c."""
    feats, labels, weight, bias = _batch(seed=2)
    b, alpha = feats.shape[0], 1e-6
    grads = _per_sample_grads(feats, labels, weight, bias)
    err = torch.softmax(feats @ weight.T + bias, 1) - F.one_hot(labels, 3).double()
    w_ref = torch.rand(b, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    reference = class_reference_update(err, with_bias(feats), labels, w_ref, 3)
    # The reference of class c is the weighted sum of unit per-sample gradients of class c.
    for c in range(3):
        unit = grads / grads.norm(dim=1, keepdim=True)
        expected = (w_ref[labels == c, None] * unit[labels == c]).sum(0)
        torch.testing.assert_close(torch.cat([reference[c, :, :-1].flatten(), reference[c, :, -1]]), expected)
    raw = reference_alignment(err, with_bias(feats), reference, labels, normalize=False)
    cos = reference_alignment(err, with_bias(feats), reference, labels)
    eta = torch.ones(b, dtype=torch.float64, requires_grad=True)
    w, c = weight.clone().requires_grad_(), bias.clone().requires_grad_()
    losses = F.cross_entropy(feats @ w.T + c, labels, reduction="none")
    gw, gc = torch.autograd.grad((eta * losses).mean(), (w, c), create_graph=True)
    after = F.cross_entropy(feats @ (w - alpha * gw).T + (c - alpha * gc), labels, reduction="none")
    gnorm = grads.norm(dim=1)
    for i in range(b):
        same = labels == labels[i]
        meta = (w_ref[same] * after[same] / gnorm[same]).sum()
        (hyper,) = torch.autograd.grad(meta, eta, retain_graph=True)
        assert math.isclose(hyper[i].item(), -alpha / b * raw[i].item(), rel_tol=1e-4, abs_tol=1e-14)
        ref_vec = torch.cat([reference[labels[i], :, :-1].flatten(), reference[labels[i], :, -1]])
        assert math.isclose(cos[i].item(), (grads[i] @ ref_vec / gnorm[i] / ref_vec.norm()).item(), rel_tol=1e-9)


@pytest.mark.parametrize("meta, base", [("given", "sgd"), ("given+predicted", "sgd"), ("auto", "sgd"),
                                        ("given", "adam")])
def test_mislabelled_samples_lose_rate_on_separable_data(meta, base):
    torch.manual_seed(0)
    n, k, d = 300, 3, 6
    centers = torch.eye(k, d) * 4
    true = torch.arange(n) % k
    feats = (centers[true] + torch.randn(n, d)).relu()
    given = true.clone()
    given[:30] = (true[:30] + 1) % k  # 10% wrong labels
    head = torch.nn.Linear(d, k)
    rates = PerSampleRate(n, k, hyper_lr=0.3, meta=meta)
    opt = (torch.optim.SGD(head.parameters(), lr=0.1, momentum=0.9) if base == "sgd"
           else torch.optim.Adam(head.parameters(), lr=0.01))
    for _ in range(8):
        for idx in torch.randperm(n).split(30):
            _train_step(head, rates, opt, feats, given, idx)
    r = rates.rates()
    assert r[:30].max() < r[30:].median()
    if meta == "auto":
        g = rates.given_log_rates
        assert g[:30].max() < g[30:].median() and not torch.equal(g, rates.log_rates)


def test_auto_learns_both_rate_vectors_from_one_forward_pass():
    """auto's weighting rates follow given+predicted and its side vector follows given, step for step."""
    torch.manual_seed(1)
    n, k, d = 60, 3, 4
    feats, labels = torch.rand(n, d), torch.arange(n) % k
    logits = [torch.randn(n, k) for _ in range(4)]
    opts = {m: PerSampleRate(n, k, hyper_lr=0.5, meta=m) for m in ("auto", "given", "given+predicted")}
    for step in range(4):
        idx = torch.arange(step * 15, step * 15 + 30) % n
        for r in opts.values():
            r.reference = None if step == 0 else r.reference
            r.step(idx, logits[step][idx], feats[idx], labels[idx])
        # share one reference so that the three update from the same state
        for m in ("given", "given+predicted"):
            opts[m].reference = opts["auto"].reference.clone()
            opts[m].log_rates.copy_(opts["auto"].log_rates if m == "given+predicted" else opts["auto"].given_log_rates)
    auto = opts["auto"]
    idx = torch.arange(30)
    for r in opts.values():
        r.step(idx, logits[0][idx], feats[idx], labels[idx])
    torch.testing.assert_close(auto.log_rates, opts["given+predicted"].log_rates)
    torch.testing.assert_close(auto.given_log_rates, opts["given"].log_rates)
    named = auto.named_rates(idx)
    assert set(named) == {"learned_lr", "learned_lr_given"}
    torch.testing.assert_close(named["learned_lr_given"], auto.given_log_rates[idx].exp())


def test_many_classes_fall_back_to_in_batch_reference():
    rates = PerSampleRate(12, 3, hyper_lr=1.0, max_reference_size=10)
    g = torch.Generator().manual_seed(0)
    rates.step(torch.arange(6), torch.randn(6, 3, generator=g), torch.rand(6, 4, generator=g),
               torch.tensor([0, 0, 0, 1, 1, 2]))
    assert rates.reference is None
    assert rates.log_rates[5] == 0.0 and (rates.log_rates[:5] != 0).any()  # class 2 had no partner


def test_alignment_is_lower_for_a_sample_that_looks_like_another_class():
    # Class 0 lives near e0, class 1 near e1; sample 0 is labelled 0 but looks like class 1.
    feats = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.1], [0.9, 0.0], [0.0, 1.0], [0.1, 1.0]])
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    probs = torch.tensor([[0.2, 0.8], [0.6, 0.4], [0.6, 0.4], [0.6, 0.4], [0.3, 0.7], [0.3, 0.7]])
    err = probs - F.one_hot(labels, 2).float()
    align, _ = class_conditional_alignment(err, feats, labels)
    assert align[0] < align[1:4].min()


def test_probability_margin():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.4, 0.4, 0.2]])
    torch.testing.assert_close(probability_margin(probs, torch.tensor([0, 0, 2])), torch.tensor([0.5, -0.5, -0.2]))


def test_own_fit_term_descends_the_self_paced_margin_cost():
    """The margin term moves s_i by -beta * (dF/d eta_i - batch mean), F = lam * sum_j eta_j (1 - m_j)."""
    g = torch.Generator().manual_seed(3)
    n, k, d, beta, lam = 16, 3, 4, 0.3, 0.7
    feats, labels = torch.rand(n, d, generator=g), torch.arange(n) % k
    logits = [torch.randn(n, k, generator=g) * 2 for _ in range(2)]
    idx = torch.arange(n)
    with_term, without = (PerSampleRate(n, k, hyper_lr=beta, meta="given", margin_weight=w) for w in (lam, 0.0))
    for rates in (with_term, without):
        for step_logits in logits:  # the first step builds the reference, the second moves the rates
            rates.step(idx, step_logits, feats, labels)
    eta = torch.ones(n, requires_grad=True)
    margin = probability_margin(torch.softmax(logits[1], dim=1), labels)
    (grad,) = torch.autograd.grad(lam * (eta * (1 - margin)).sum(), eta)
    torch.testing.assert_close(with_term.log_rates - without.log_rates, -beta * (grad - grad.mean()))
    assert with_term.log_rates[margin.argmin()] < without.log_rates[margin.argmin()]


def test_step_is_sparse_even_under_momentum_and_weight_decay():
    torch.manual_seed(0)
    n, head = 20, torch.nn.Linear(4, 3)
    rates = PerSampleRate(n, 3, hyper_lr=0.5)
    base = torch.optim.SGD(head.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    feats, labels = torch.randn(n, 4), torch.arange(n) % 3
    before = rates.log_rates.clone()
    batch = torch.tensor([1, 4, 7, 10, 13, 16])
    for _ in range(3):  # the base optimizer's momentum keeps moving; the absent rows must not
        _train_step(head, rates, base, feats, labels, batch)
    absent = torch.ones(n, dtype=torch.bool)
    absent[batch] = False
    torch.testing.assert_close(rates.log_rates[absent], before[absent], rtol=0, atol=0)
    assert (rates.log_rates[batch] != before[batch]).any()


def test_first_batch_only_builds_the_reference():
    rates = PerSampleRate(4, 3, hyper_lr=1.0)
    logits, feats = torch.randn(3, 3), torch.rand(3, 2)
    rates.step(torch.tensor([0, 1, 2]), logits, feats, torch.tensor([0, 0, 2]))
    assert (rates.log_rates == 0.0).all() and rates.reference.shape == (3, 3, 3)
    rates.step(torch.tensor([0, 1, 2]), logits, feats, torch.tensor([0, 1, 2]))
    assert (rates.log_rates[:3] != 0.0).any() and rates.log_rates[3] == 0.0


def test_rates_are_clamped():
    rates = PerSampleRate(6, 2, hyper_lr=100.0, min_rate=0.5, max_rate=2.0)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        idx = torch.arange(6)
        rates.step(idx, torch.randn(6, 2, generator=g) * 5, torch.rand(6, 3, generator=g),
                   torch.tensor([0, 0, 0, 1, 1, 1]))
    r = rates.rates()
    assert torch.isfinite(r).all()
    assert r.min() >= 0.5 - 1e-6 and r.max() <= 2.0 + 1e-6
    assert math.isclose(r.min().item(), 0.5, rel_tol=1e-5) or math.isclose(r.max().item(), 2.0, rel_tol=1e-5)


def test_state_dict_round_trip():
    a = PerSampleRate(10, 2, hyper_lr=0.3, ema=0.5, meta="given+predicted", margin_weight=0.2, min_rate=0.1,
                      max_rate=5.0)
    for _ in range(2):
        a.step(torch.arange(6), torch.randn(6, 2), torch.rand(6, 3), torch.tensor([0, 0, 0, 1, 1, 1]))
    b = PerSampleRate(10, 2)
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(b.log_rates, a.log_rates)
    torch.testing.assert_close(b.reference, a.reference)
    assert b.given_log_rates is None
    assert (b.hyper_lr, b.ema, b.meta, b.margin_weight, b.log_min, b.log_max) == (
        a.hyper_lr, a.ema, a.meta, a.margin_weight, a.log_min, a.log_max)
    # Both continue identically.
    args = (torch.arange(4), torch.randn(4, 2), torch.rand(4, 3), torch.tensor([0, 1, 0, 1]))
    a.step(*args)
    b.step(*args)
    torch.testing.assert_close(b.log_rates, a.log_rates)
    with pytest.raises(ValueError, match="rates"):
        PerSampleRate(11, 2).load_state_dict(a.state_dict())


def test_auto_state_dict_keeps_the_given_rates():
    a = PerSampleRate(8, 3, meta="auto", hyper_lr=1.0)
    for _ in range(3):
        a.step(torch.arange(6), torch.randn(6, 3), torch.rand(6, 2), torch.tensor([0, 1, 2, 0, 1, 2]))
    b = PerSampleRate(8, 3, meta="auto")
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(b.given_log_rates, a.given_log_rates)
    assert not torch.equal(a.given_log_rates, torch.zeros(8))


@pytest.mark.parametrize("kwargs", [dict(num_samples=0), dict(num_classes=1), dict(hyper_lr=-1.0),
                                    dict(min_rate=0.0), dict(min_rate=2.0), dict(max_rate=float("inf")),
                                    dict(hyper_lr=float("nan")), dict(ema=1.0), dict(meta="everything"),
                                    dict(margin_weight=-0.1), dict(margin_weight=float("inf")),
                                    dict(trusted_weight=1.5), dict(trusted_ema=1.0), dict(trusted_rate=1e3),
                                    dict(trusted=torch.zeros(4, dtype=torch.bool))])
def test_hyperparameters_are_validated(kwargs):
    with pytest.raises(ValueError):
        PerSampleRate(**{"num_samples": 3, "num_classes": 2, **kwargs})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_rate_updates_on_cuda_match_cpu():
    """The same batches give the same rates and references on CUDA as on CPU (float rounding aside)."""
    gen = torch.Generator().manual_seed(5)
    n, k, d = 200, 4, 16
    batches = [(torch.randperm(n, generator=gen)[:40], torch.randn(40, k, generator=gen) * 2,
                torch.rand(40, d, generator=gen), torch.randint(0, k, (40,), generator=gen)) for _ in range(25)]
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        results = {}
        for device in ("cpu", "cuda"):
            rates = PerSampleRate(n, k, hyper_lr=0.5, device=device)
            for batch in batches:
                rates.step(*(t.to(device) for t in batch))
            results[device] = (rates.log_rates.cpu(), rates.given_log_rates.cpu(), rates.reference.cpu())
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    for cpu, cuda in zip(results["cpu"], results["cuda"]):
        torch.testing.assert_close(cuda, cpu, rtol=1e-5, atol=1e-5)
    assert results["cpu"][0].std() > 0.01  # the rates did move


def test_centred_features_equal_an_explicit_centring_of_the_head_inputs():
    """center_features: the update is the uncentred one applied to h - (running mean of h), the mean kept
    as an EMA (decay ema) over batches and restored by state_dict."""
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randperm(20, generator=g)[:8], torch.randn(8, 3, generator=g),
                torch.rand(8, 5, generator=g) + 2.0, torch.randint(0, 3, (8,), generator=g)) for _ in range(4)]
    centred = PerSampleRate(20, 3, hyper_lr=0.5, ema=0.5, center_features=True)
    manual = PerSampleRate(20, 3, hyper_lr=0.5, ema=0.5)
    mean = None
    for idx, logits, feats, y in batches:
        centred.step(idx, logits, feats, y)
        mean = feats.mean(0) if mean is None else 0.5 * mean + 0.5 * feats.mean(0)
        manual.step(idx, logits, feats - mean, y)
    torch.testing.assert_close(centred.log_rates, manual.log_rates)
    torch.testing.assert_close(centred.feature_mean, mean)
    assert not torch.equal(centred.log_rates, PerSampleRate(20, 3).log_rates)
    restored = PerSampleRate(20, 3)
    restored.load_state_dict(centred.state_dict())
    assert restored.center_features
    torch.testing.assert_close(restored.feature_mean, centred.feature_mean)


def _majority_flipped_class(trusted_weight: float, seed: int = 0, trusted_all_weight: float = 0.0,
                            trusted_count: tuple[int, int] = (10, 0)) -> tuple[torch.Tensor, torch.Tensor, PerSampleRate]:
    """Label 0 is carried by 40 samples that look like class 0 and by 60 that look like class 1 (a wrong
    label that outnumbers the right one, as pair-flip noise above 50% or instance noise can make locally);
    label 1 by 50 samples of class 1. Ten of the true class-0 samples are trusted (verified; ``trusted_count``:
how many of class 0 and of class 1). The head
    is held at zero, so every sample's gradient differs only by its input. Returns the wrong-label mask,
    the trusted mask and the optimizer after 20 passes over the data."""
    g = torch.Generator().manual_seed(seed)
    looks = torch.cat([torch.zeros(40), torch.ones(60), torch.ones(50)]).long()  # the true class
    labels = torch.cat([torch.zeros(100), torch.ones(50)]).long()
    feats = F.one_hot(looks, 2).double() + 0.3 * torch.rand(150, 2, generator=g, dtype=torch.float64)
    trusted = torch.zeros(150, dtype=torch.bool)
    trusted[:trusted_count[0]] = True
    trusted[100:100 + trusted_count[1]] = True
    rates = PerSampleRate(150, 2, hyper_lr=0.1, meta="given", margin_weight=0.0, trusted=trusted,
                          trusted_weight=trusted_weight, trusted_all_weight=trusted_all_weight)
    for _ in range(20):
        for idx in torch.randperm(150, generator=g).split(30):
            rates.step(idx, torch.zeros(len(idx), 2, dtype=torch.float64), feats[idx], labels[idx])
    return looks != labels, trusted, rates


def test_a_trusted_set_turns_the_rates_against_the_labels_it_contradicts():
    wrong, trusted, own = _majority_flipped_class(trusted_weight=0.0)
    log_own = own.log_rates
    label0 = torch.arange(150) < 100
    # Without trusted references the majority sets what label 0 looks like: its true members lose rate.
    assert log_own[label0 & wrong].mean() > log_own[label0 & ~wrong & ~trusted].mean()
    wrong, trusted, guided = _majority_flipped_class(trusted_weight=1.0)
    log_guided = guided.log_rates
    # Against what the verified class-0 samples look like, the 60 that look like class 1 lose rate instead.
    assert log_guided[label0 & wrong].mean() < log_guided[label0 & ~wrong & ~trusted].mean() - 0.5
    assert log_guided[wrong].mean() < log_own[wrong].mean() - 0.3
    # Trusted rates never move, and the state round-trips.
    assert torch.equal(log_guided[trusted], torch.zeros(10))
    again = PerSampleRate(150, 2, trusted=trusted)
    again.load_state_dict(guided.state_dict())
    torch.testing.assert_close(again.trusted_reference, guided.trusted_reference)
    assert again.trusted_weight == 1.0


def test_all_classes_trusted_reference_turns_the_rates_against_the_contradicted_labels():
    """With trusted samples of both classes, the alignment with all trusted references at once (no per-class
    mix) turns the rates against the wrong labels; with trusted samples of one class only it stays off."""
    label0 = torch.arange(150) < 100
    wrong, trusted, rates = _majority_flipped_class(0.0, trusted_all_weight=1.0, trusted_count=(10, 10))
    log = rates.log_rates
    assert log[label0 & wrong].mean() < log[label0 & ~wrong & ~trusted].mean() - 1.0
    assert log[label0 & wrong].mean() < log[~label0 & ~trusted].mean() - 1.0
    _, _, one_class = _majority_flipped_class(0.0, trusted_all_weight=1.0, trusted_count=(10, 0))
    _, _, off = _majority_flipped_class(0.0, trusted_all_weight=0.0, trusted_count=(10, 0))
    torch.testing.assert_close(one_class.log_rates, off.log_rates)
    with pytest.raises(ValueError, match="trusted_all_weight"):
        PerSampleRate(4, 2, trusted_all_weight=-1.0)


def test_trusted_rows_stay_out_of_the_batch_centring():
    trusted = torch.tensor([True, False, False, False])
    rates = PerSampleRate(4, 2, hyper_lr=1.0, meta="given", margin_weight=0.0, trusted=trusted, trusted_rate=2.0)
    feats, labels = torch.rand(4, 3, dtype=torch.float64), torch.tensor([0, 0, 1, 1])
    for _ in range(3):
        rates.step(torch.arange(4), torch.randn(4, 2, dtype=torch.float64), feats, labels)
    assert rates.rates()[0].item() == pytest.approx(2.0)
    assert abs(float(rates.log_rates[1:].sum())) < 1e-6  # the untrusted rows alone are centred
