import math

from protfit.training.early_stopping import EarlyStopping

NAN = float("nan")


def test_loss_monitor_keeps_the_lowest_value():
    # pitfall: the peer kept the epoch with the highest validation loss as "best"
    stopper = EarlyStopping("loss", "min", patience=10)
    for epoch, value in enumerate([0.9, 0.5, 0.7, 0.4, 0.6], start=1):
        stopper.update(value, value, epoch)
    assert (stopper.best_epoch, stopper.best_value) == (4, 0.4)


def test_metric_monitor_keeps_the_highest_value_and_stops_after_patience():
    stopper = EarlyStopping("mcc", "max", patience=2)
    assert stopper.update(0.3, 1.0, 1)
    assert not stopper.update(0.2, 1.0, 2) and not stopper.should_stop
    assert not stopper.update(0.25, 1.0, 3) and stopper.should_stop
    assert stopper.best_epoch == 1


def test_min_delta_and_nan_do_not_count_as_improvement():
    stopper = EarlyStopping("spearman", "max", patience=None, min_delta=0.05)
    stopper.update(0.50, 1.0, 1)
    assert not stopper.update(0.53, 1.0, 2)
    assert not stopper.update(NAN, 0.1, 3)  # a lower loss does not make an undefined epoch best
    assert stopper.update(0.56, 1.0, 4)
    assert not stopper.should_stop  # patience None never stops


def test_an_undefined_metric_never_turns_the_loss_into_the_best_value():
    # the sweep once ranked a constant predictor first: the fallback stored its loss (0.9383) as
    # its Spearman. Undefined epochs are ordered by loss while nothing better exists, but the best
    # value stays the metric's (None: undefined), and the first defined epoch replaces them.
    stopper = EarlyStopping("spearman", "max", patience=None)
    assert stopper.update(NAN, 0.95, 1)
    assert stopper.update(NAN, 0.9383, 2)
    assert not stopper.update(NAN, 0.99, 3)
    assert (stopper.best_epoch, stopper.best_value, stopper.best_loss) == (2, None, 0.9383)
    assert stopper.selected_by_loss
    assert stopper.update(0.12, 1.5, 4)  # defined beats undefined whatever the loss
    assert (stopper.best_epoch, stopper.best_value) == (4, 0.12) and not stopper.selected_by_loss
    assert not stopper.update(NAN, 0.1, 5)
    assert not math.isnan(stopper.best_value)


def test_state_round_trip_and_older_checkpoints():
    stopper = EarlyStopping("loss", "min", patience=3)
    stopper.update(1.0, 1.0, 1)
    stopper.update(2.0, 2.0, 2)
    restored = EarlyStopping("loss", "min", patience=3)
    restored.load_state_dict({**stopper.state_dict(), "fallback_reason": None})  # a key of older versions
    assert restored == stopper
