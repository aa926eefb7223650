import pytest
import torch

from protfit.config import ConfigError, SchedulerConfig
from protfit.registry import SCHEDULERS
from protfit.training.schedulers import build_scheduler, warmup_steps

PEAK = 1e-3


def run_schedule(cfg: SchedulerConfig, total: int) -> list[float]:
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([parameter], lr=PEAK)
    scheduler = build_scheduler(optimizer, cfg, total)
    rates = [scheduler.get_last_lr()[0]]
    for _ in range(total):
        optimizer.step()
        scheduler.step()
        rates.append(scheduler.get_last_lr()[0])
    return rates


@pytest.mark.parametrize(
    "name, extra, end",
    [
        ("linear", {}, 0.0),
        ("cosine", {}, 0.0),
        ("cosine_with_restarts", {"num_cycles": 3}, 0.0),
        ("polynomial", {"lr_end": 1e-5, "power": 2.0}, 1e-5),
        ("constant", {}, PEAK),
        ("step", {"step_size": 10, "gamma": 0.5}, PEAK * 0.5**3),
    ],
)
def test_each_schedule_reaches_its_end_value_on_the_last_step(name, extra, end):
    rates = run_schedule(SchedulerConfig(name=name, warmup_steps=4, **extra), total=40)
    assert rates[0] < PEAK  # warm-up starts below the peak
    assert max(rates) == pytest.approx(PEAK, rel=0.3)
    assert rates[-1] == pytest.approx(end, abs=1e-9)


def test_none_keeps_the_rate_and_refuses_warmup():
    assert set(run_schedule(SchedulerConfig(name="none"), total=10)) == {PEAK}
    with pytest.raises(ConfigError, match="no warm-up"):
        run_schedule(SchedulerConfig(name="none", warmup_steps=2), total=10)


def test_cosine_with_restarts_restarts():
    rates = run_schedule(SchedulerConfig(name="cosine_with_restarts", num_cycles=2), total=20)
    assert rates[10] > rates[9] * 5  # jumps back up at the start of the second cycle


def test_warmup_ratio_counts_optimizer_steps():
    assert warmup_steps(SchedulerConfig(warmup_ratio=0.1), 95) == 10
    rates = run_schedule(SchedulerConfig(name="linear", warmup_ratio=0.25), total=20)
    assert rates.index(max(rates)) == 5


def test_warmup_longer_than_run_is_refused():
    with pytest.raises(ConfigError, match="warm-up"):
        run_schedule(SchedulerConfig(name="linear", warmup_steps=50), total=20)


def test_config_accepts_exactly_the_registered_schedulers():
    for name in SCHEDULERS.names():
        assert SchedulerConfig(name=name).name == name
    with pytest.raises(ValueError, match="unknown scheduler 'cosin' .did you mean 'cosine'"):
        SchedulerConfig(name="cosin")
