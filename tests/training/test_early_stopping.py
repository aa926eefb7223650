from protfit.training.early_stopping import EarlyStopping


def test_loss_monitor_keeps_the_lowest_value():
    # pitfall: the peer kept the epoch with the highest validation loss as "best"
    stopper = EarlyStopping("loss", "min", patience=10)
    for epoch, value in enumerate([0.9, 0.5, 0.7, 0.4, 0.6], start=1):
        stopper.update(value, epoch)
    assert (stopper.best_epoch, stopper.best_value) == (4, 0.4)


def test_metric_monitor_keeps_the_highest_value_and_stops_after_patience():
    stopper = EarlyStopping("mcc", "max", patience=2)
    assert stopper.update(0.3, 1)
    assert not stopper.update(0.2, 2) and not stopper.should_stop
    assert not stopper.update(0.25, 3) and stopper.should_stop
    assert stopper.best_epoch == 1


def test_min_delta_and_nan_do_not_count_as_improvement():
    stopper = EarlyStopping("spearman", "max", patience=None, min_delta=0.05)
    stopper.update(0.50, 1)
    assert not stopper.update(0.53, 2)
    assert not stopper.update(float("nan"), 3)
    assert stopper.update(0.56, 4)
    assert not stopper.should_stop  # patience None never stops


def test_state_round_trip():
    stopper = EarlyStopping("loss", "min", patience=3)
    stopper.update(1.0, 1)
    stopper.update(2.0, 2)
    restored = EarlyStopping("loss", "min", patience=3)
    restored.load_state_dict(stopper.state_dict())
    assert restored == stopper
