use super::*;

#[test]
fn condition_transition_time_moves_only_on_change() {
    let mut conds = vec![];
    set_condition(&mut conds, ConditionType::Complete, false, Reason::InProgress, "", Some(1));
    let t0 = conds[0].last_transition_time.clone();
    std::thread::sleep(std::time::Duration::from_millis(2));
    set_condition(&mut conds, ConditionType::Complete, false, Reason::GaveUp, "x", Some(1));
    assert_eq!(conds[0].last_transition_time, t0);
    assert_eq!(conds[0].reason, "GaveUp");
    set_condition(&mut conds, ConditionType::Complete, true, Reason::Succeeded, "", Some(1));
    assert_ne!(conds[0].last_transition_time, t0);
    assert_eq!((conds.len(), conds[0].type_.as_str()), (1, "Complete"));
}

#[test]
fn words_are_spelled_as_their_names() {
    assert_eq!(Reason::TemplateUnresolved.as_str(), "TemplateUnresolved");
    assert_eq!(ConditionType::Valid.to_string(), "Valid");
}
