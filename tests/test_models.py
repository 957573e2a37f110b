import pytest
import torch

from namesclf.models.handbuilt import HandBuiltBackprop, HandBuiltRNN
from namesclf.models.networks import RecurrentClassifier, build_classifier
from namesclf.text import N_LETTERS, batch_indices, line_to_tensor
from namesclf.training.loop import ManualSGD, make_updater

from .conftest import network_config

NAMES = ["Abe", "Li", "Dostoevsky", "O'Neill", "X"]


def test_handbuilt_has_the_tutorials_layers() -> None:
    m = HandBuiltRNN(N_LETTERS, 32, 5)
    assert m.i2h.in_features == N_LETTERS + 32 and m.i2h.out_features == 32
    assert m.i2o.in_features == N_LETTERS + 32 and m.i2o.out_features == 5
    out, hidden = m.step(line_to_tensor("A")[0], m.init_hidden())
    assert out.shape == (1, 5) and hidden.shape == (1, 32)
    assert torch.allclose(out.exp().sum(), torch.tensor(1.0))


def test_batched_forward_equals_one_name_at_a_time() -> None:
    torch.manual_seed(0)
    for tanh in (False, True):
        m = HandBuiltRNN(N_LETTERS, 24, 7, tanh=tanh)
        idx, lengths = batch_indices(NAMES)
        batched = m(idx, lengths)
        single = torch.cat([m.forward_line(line_to_tensor(n)) for n in NAMES])
        assert torch.allclose(batched, single, atol=1e-6), (tanh, (batched - single).abs().max())


def test_padding_does_not_change_a_names_output() -> None:
    torch.manual_seed(0)
    for m in (HandBuiltRNN(N_LETTERS, 16, 4, tanh=True), RecurrentClassifier("gru", 4, hidden_size=16).eval()):
        alone = m(*batch_indices(["Li"]))
        padded = m(*batch_indices(["Li", "Papadopoulos"]))[:1]
        assert torch.allclose(alone, padded, atol=1e-6)


def _loss(m, idx, lengths, y):
    return torch.nn.functional.nll_loss(m(idx, lengths), y)


def test_manual_sgd_step_equals_torch_sgd() -> None:
    torch.manual_seed(1)
    a = HandBuiltRNN(N_LETTERS, 20, 6)
    b = HandBuiltRNN(N_LETTERS, 20, 6)
    b.load_state_dict(a.state_dict())
    idx, lengths = batch_indices(NAMES)
    y = torch.tensor([0, 1, 2, 3, 4])
    manual = ManualSGD(a.parameters(), lr=0.1)
    reference = torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.0)
    for _ in range(3):
        for m, opt in ((a, manual), (b, reference)):
            opt.zero_grad()
            _loss(m, idx, lengths, y).backward()
            opt.step()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.allclose(pa, pb, atol=1e-6), name
    assert not torch.allclose(a.i2h.weight, HandBuiltRNN(N_LETTERS, 20, 6).i2h.weight)


def test_manual_sgd_clipping_equals_clip_grad_norm_then_sgd() -> None:
    torch.manual_seed(4)
    a = HandBuiltRNN(N_LETTERS, 20, 6, tanh=True)
    b = HandBuiltRNN(N_LETTERS, 20, 6, tanh=True)
    b.load_state_dict(a.state_dict())
    idx, lengths = batch_indices(NAMES)
    y = torch.tensor([0, 1, 2, 3, 4])
    manual = make_updater("manual", a.parameters(), lr=0.5, max_norm=0.05)
    reference = torch.optim.SGD(b.parameters(), lr=0.5)
    clipped = []
    for _ in range(3):
        manual.zero_grad()
        _loss(a, idx, lengths, y).backward()
        manual.step()
        reference.zero_grad()
        _loss(b, idx, lengths, y).backward()
        clipped.append(float(torch.nn.utils.clip_grad_norm_(b.parameters(), 0.05)) > 0.05)
        reference.step()
    assert all(clipped)  # the limit was hit, so the test would catch a step that ignored it
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.allclose(pa, pb, atol=1e-6), name


def test_manual_sgd_update_is_minus_lr_times_grad() -> None:
    torch.manual_seed(2)
    m = HandBuiltRNN(N_LETTERS, 8, 3)
    before = {k: v.clone() for k, v in m.named_parameters()}
    idx, lengths = batch_indices(["Abe", "Li"])
    opt = make_updater("manual", m.parameters(), lr=0.05)
    opt.zero_grad()
    _loss(m, idx, lengths, torch.tensor([0, 2])).backward()
    grads = {k: p.grad.clone() for k, p in m.named_parameters()}
    opt.step()
    for k, p in m.named_parameters():
        assert torch.allclose(p, before[k] - 0.05 * grads[k], atol=1e-7)


def test_gradient_check_handbuilt() -> None:
    torch.manual_seed(3)
    m = HandBuiltRNN(N_LETTERS, 6, 3, tanh=True).double()
    idx, lengths = batch_indices(["Abe", "Li"])
    w = m.i2h.weight

    def f(weight):
        with torch.no_grad():
            w.copy_(weight)
        return _loss_double(m, idx, lengths).detach()

    weight = w.detach().clone()
    m.zero_grad()
    _loss_double(m, idx, lengths).backward()
    analytic = w.grad.clone()
    eps = 1e-6
    for i, j in [(0, 0), (2, 60), (5, 63)]:
        plus, minus = weight.clone(), weight.clone()
        plus[i, j] += eps
        minus[i, j] -= eps
        numeric = (f(plus).item() - f(minus).item()) / (2 * eps)
        assert abs(numeric - float(analytic[i, j])) < 1e-6


def _loss_double(m, idx, lengths):
    from namesclf.text import one_hot

    letters = one_hot(idx).double()
    hidden = torch.zeros(idx.size(1), m.hidden_size, dtype=torch.double)
    outs = []
    for t in range(idx.size(0)):
        out, hidden = m.step(letters[t], hidden)
        outs.append(out)
    final = torch.stack([outs[int(n) - 1][b] for b, n in enumerate(lengths)])
    return torch.nn.functional.nll_loss(final, torch.tensor([0, 1]))


def test_recurrent_classifier_cells_and_shapes() -> None:
    idx, lengths = batch_indices(NAMES)
    for cell in ("rnn", "gru", "lstm"):
        for bidirectional in (True, False):
            m = build_classifier(network_config(model=cell, hidden=16, bidirectional=bidirectional), 4).eval()
            out = m(idx, lengths)
            assert out.shape == (len(NAMES), 4)
            assert torch.allclose(out.exp().sum(1), torch.ones(len(NAMES)), atol=1e-5)


@pytest.mark.parametrize("fast_loop_from", [1, 10**6])
def test_unpadded_batches_skip_packing_with_the_same_numbers(fast_loop_from: int,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch of one length takes an unpacked path (the gathered-input loop for GRU/RNN from
    ``FAST_LOOP_MIN_BATCH`` names, else the torch module on a plain tensor); both must agree with
    the packed path (forced here by one longer name in the batch) for every cell and direction."""
    monkeypatch.setattr("namesclf.models.networks.FAST_LOOP_MIN_BATCH", fast_loop_from)
    same = ["Abel", "Cruz", "Dede", "Nemo"]
    torch.manual_seed(0)
    for cell in ("rnn", "gru", "lstm"):
        for bidirectional in (True, False):
            m = build_classifier(network_config(model=cell, hidden=16, bidirectional=bidirectional), 4).eval()
            idx, lengths = batch_indices(same)
            mixed_idx, mixed_lengths = batch_indices([*same, "Abramovich"])
            with torch.inference_mode():
                dense = m(idx, lengths)
                packed = m(mixed_idx, mixed_lengths)[: len(same)]
            torch.testing.assert_close(dense, packed, atol=1e-5, rtol=1e-5)


def _letters_and_last(names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    idx, lengths = batch_indices(names)
    return idx.clamp(max=N_LETTERS - 1), lengths - 1


@pytest.mark.parametrize("names", [["Abe", "Li", "Nakamura", "X"], ["X", "Y"], ["Li", "X"]],
                         ids=["mixed", "one-letter-only", "one-step"])
@pytest.mark.parametrize("tanh", [False, True])
def test_hand_written_backward_passes_gradcheck(tanh: bool, names: list[str]) -> None:
    """The hand-built RNN's back-propagation through time is written out (``HandBuiltBackprop``,
    log-softmax included): the gradients of all four parameters must match finite differences, on
    a padded batch of names of different lengths (one of a single letter), on one-letter names
    alone (no recurrence step: ``i2h`` gets a zero gradient) and on a batch with one step."""
    torch.manual_seed(0)
    letters, last = _letters_and_last(names)
    hidden, classes = 5, 3
    params = [(0.5 * torch.randn(*shape, dtype=torch.double)).requires_grad_()
              for shape in ((hidden, N_LETTERS + hidden), (hidden,), (classes, N_LETTERS + hidden), (classes,))]
    assert torch.autograd.gradcheck(lambda *p: HandBuiltBackprop.apply(letters, last, *p, tanh), params)


def test_hand_written_backward_matches_autograd_through_step() -> None:
    """The same gradients as autograd gives for the tutorial's own ``step`` loop, in float32."""
    torch.manual_seed(1)
    names = ["Abe", "Li", "Dostoevsky", "O'Neill", "X"]
    m = HandBuiltRNN(N_LETTERS, 12, 4, tanh=True)
    y = torch.tensor([0, 1, 2, 3, 0])
    torch.nn.functional.nll_loss(m(*batch_indices(names)), y).backward()
    ours = {k: p.grad.clone() for k, p in m.named_parameters()}
    m.zero_grad()
    torch.nn.functional.nll_loss(torch.cat([m.forward_line(line_to_tensor(n)) for n in names]), y).backward()
    for k, p in m.named_parameters():
        torch.testing.assert_close(ours[k], p.grad, atol=1e-6, rtol=1e-5, msg=k)


def test_manual_sgd_training_follows_the_tutorials_step_loop() -> None:
    """Ten clipped manual-SGD steps through the batched hand-written pass give the same network as
    ten through autograd over the tutorial's one-name ``step`` loop: the same function and the
    same training, up to float rounding."""
    torch.manual_seed(5)
    a = HandBuiltRNN(N_LETTERS, 16, 4, tanh=True)
    b = HandBuiltRNN(N_LETTERS, 16, 4, tanh=True)
    b.load_state_dict(a.state_dict())
    names = ["Abe", "Li", "Dostoevsky", "O'Neill", "X", "Nakamura"]
    idx, lengths = batch_indices(names)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    ours = make_updater("manual", a.parameters(), lr=0.5, max_norm=1.0)
    tutorial = make_updater("manual", b.parameters(), lr=0.5, max_norm=1.0)
    for _ in range(10):
        ours.zero_grad()
        torch.nn.functional.nll_loss(a(idx, lengths), y).backward()
        ours.step()
        tutorial.zero_grad()
        torch.nn.functional.nll_loss(torch.cat([b.forward_line(line_to_tensor(n)) for n in names]), y).backward()
        tutorial.step()
    moved = (a.i2h.weight - HandBuiltRNN(N_LETTERS, 16, 4).i2h.weight).abs().max()
    assert moved > 0.01  # the steps did something, so agreeing below is not trivial
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, atol=1e-5, rtol=1e-5, msg=name)
