use super::*;

#[test]
fn the_controller_watches_every_phase_but_the_finished_ones() {
    assert_eq!(unfinished_selector(), "status.phase!=Succeeded,status.phase!=Failed,status.phase!=DryRun");
}

#[test]
fn the_sweep_runs_often_enough_for_the_retention_and_not_too_often() {
    assert_eq!(sweep_interval(Duration::from_secs(4)), Duration::from_secs(2));
    assert_eq!(sweep_interval(Duration::from_millis(10)), Duration::from_secs(1));
    assert_eq!(sweep_interval(Duration::from_secs(400 * 86_400)), Duration::from_secs(600));
}
