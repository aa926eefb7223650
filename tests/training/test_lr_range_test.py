"""The learning-rate range test core: ramp, smoothing, stop rule, suggestion, state restored."""

import math
import random

import numpy as np
import pytest
import torch

from protfit.training.lr_range_test import plot_curve, ramp, range_test, suggest, write_curve_csv


def regression_problem(seed: int = 0):
    """A small MLP on a standardised linear target: a clear descent before divergence."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(512, 8, generator=generator)
    targets = inputs @ torch.randn(8, 1, generator=generator)
    targets = (targets - targets.mean()) / targets.std() + 0.1 * torch.randn(512, 1, generator=generator)
    batches = [(inputs[i : i + 64], targets[i : i + 64]) for i in range(0, 512, 64)]
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Dropout(0.1), torch.nn.Linear(16, 1)
    )
    return model, batches


def batch_loss(model, batch):
    inputs, targets = batch
    return torch.nn.functional.mse_loss(model(inputs), targets)


def test_ramp_is_exponential_and_includes_both_ends():
    lrs = ramp(1e-7, 1.0, 8)
    assert lrs[0] == pytest.approx(1e-7) and lrs[-1] == pytest.approx(1.0)
    ratios = lrs[1:] / lrs[:-1]
    assert np.allclose(ratios, ratios[0])
    with pytest.raises(ValueError, match="start_lr < end_lr"):
        ramp(1.0, 1e-3, 10)


def ema(losses, beta=0.98):
    """The range test's smoothing (bias-corrected exponential moving average), for curves made up here."""
    average, smoothed = 0.0, []
    for step, loss in enumerate(losses, start=1):
        average = beta * average + (1 - beta) * loss
        smoothed.append(average / (1 - beta**step))
    return smoothed


def test_smoothing_is_bias_corrected():
    # a constant loss stays constant from the first step (an uncorrected EMA would start near 0)
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    batches = [torch.zeros(1, 2)] * 5

    def constant_loss(model, batch):
        return model(batch).sum() * 0 + 2.0

    result = range_test(model, optimizer, batches, constant_loss, num_steps=5, beta=0.9)
    assert result.smoothed_losses == pytest.approx([2.0] * 5)


def test_suggestion_rules_on_a_known_curve():
    lrs = list(np.geomspace(1e-5, 1.0, 50))
    x = np.log10(lrs)
    # a valley: flat, steep descent centred at 1e-3, minimum at ~1e-1, then rising
    curve = list(2.0 - np.tanh((x + 3) * 2) + np.where(x > -1, (x + 1) ** 2 * 20, 0))
    steepest = suggest(lrs, curve, "steepest")
    assert 3e-4 < steepest < 3e-3
    minimum = lrs[int(np.argmin(curve))]
    assert suggest(lrs, curve, "min_div_10") == pytest.approx(minimum / 10)


@pytest.mark.parametrize("rule", ["steepest", "min_div_10"])
def test_range_test_suggests_inside_the_range_and_restores_everything(rule, tmp_path):
    model, batches = regression_problem()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    # give the optimizer some state first, so restoring it means something
    optimizer.zero_grad()
    batch_loss(model, batches[0]).backward()
    optimizer.step()
    weights = {key: value.clone() for key, value in model.state_dict().items()}
    optimizer_state = optimizer.state_dict()
    exp_avg = {key: value["exp_avg"].clone() for key, value in optimizer_state["state"].items()}
    model.eval()
    torch.manual_seed(123)
    np.random.seed(5)
    random.seed(7)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(123)
    np.random.seed(5)
    random.seed(7)

    result = range_test(
        model, optimizer, batches, batch_loss, start_lr=1e-6, end_lr=10.0, num_steps=80, rule=rule
    )

    assert 1e-6 <= result.suggestion <= 10.0
    assert result.rule == rule
    assert result.learning_rates[0] == pytest.approx(1e-6)
    assert "diverged" in result.stopped or "not finite" in result.stopped  # lr 10 blows this model up
    assert len(result.learning_rates) < 80
    for key, value in model.state_dict().items():
        assert torch.equal(value, weights[key]), key
    for key, value in optimizer.state_dict()["state"].items():
        assert torch.equal(value["exp_avg"], exp_avg[key])
    assert optimizer.param_groups[0]["lr"] == 1e-3
    assert not model.training  # mode restored
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]

    csv_path = write_curve_csv(result, tmp_path / "lr_find.csv")
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "lr,loss,smoothed_loss" and len(lines) == len(result.learning_rates) + 1
    png = plot_curve(result, tmp_path / "lr_find.png")
    assert png.stat().st_size > 1000


def test_the_suggestion_trains_well():
    """The suggested LR is in the useful region: training with it beats the range's extremes."""
    model, batches = regression_problem(1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    suggestion = range_test(
        model, optimizer, batches, batch_loss, start_lr=1e-6, end_lr=10.0, num_steps=60
    ).suggestion

    def final_loss(lr):
        trained, data = regression_problem(1)
        sgd = torch.optim.SGD(trained.parameters(), lr=lr)
        for _ in range(3):
            for batch in data:
                sgd.zero_grad()
                batch_loss(trained, batch).backward()
                sgd.step()
        trained.eval()
        with torch.no_grad():
            value = float(sum(batch_loss(trained, batch) for batch in data) / len(data))
        return value if math.isfinite(value) else math.inf

    assert final_loss(suggestion) < final_loss(1e-6)
    assert final_loss(suggestion) < final_loss(10.0)


def test_bad_arguments_fail_before_any_step():
    model, batches = regression_problem()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="suggestion rule"):
        range_test(model, optimizer, batches, batch_loss, rule="valley")
    with pytest.raises(ValueError, match="diverge_factor"):
        range_test(model, optimizer, batches, batch_loss, diverge_factor=1.0)


def test_a_flat_noisy_curve_falls_back_to_the_divergence_rule():
    from protfit.training.lr_range_test import significant_descent

    rng = np.random.default_rng(0)
    lrs = list(np.geomspace(1e-7, 1.0, 100))
    tail = [2.0, 4.0, 8.0, 16.0, 32.0]
    flat = [*(1.0 + 0.35 * rng.standard_normal(90)), *tail]
    assert not significant_descent(flat, ema(flat), 0.98, 10)
    falling = [*(np.linspace(2.0, 0.5, 90) + 0.1 * rng.standard_normal(90)), *tail]
    assert significant_descent(falling, ema(falling), 0.98, 10)
    # end to end: targets unrelated to the inputs leave nothing to learn, so the curve is flat noise
    generator = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(16, 8, generator=generator), torch.randn(16, 1, generator=generator)) for _ in range(8)
    ]
    model = torch.nn.Linear(8, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    result = range_test(model, optimizer, batches, batch_loss, start_lr=1e-7, end_lr=10.0, num_steps=100)
    assert result.rule == "divergence_div_10" and result.extra["requested_rule"] == "steepest"
    assert result.suggestion == pytest.approx(result.learning_rates[-1] / 10)
    assert lrs[0] <= result.suggestion <= 10.0
    # and says it: the suggestion of a flat curve is an upper bound, not a tuned rate
    assert not result.trusted and "too flat or noisy to trust" in result.note
    assert result.as_dict()["trusted"] is False
