//! Choosing the group's protocol from the members' preferences.

/// The protocol for the next generation: among the protocols every member
/// supports, the one most members list first (each member votes for the
/// first of its own protocols that everyone supports); ties go to the
/// leader's preference. `members[0]` is the leader. None if no protocol is
/// common to all (the joins' checks keep that from happening).
///
/// Worked example: the leader prefers [range, sticky], the others
/// [sticky, range] and [sticky]: only sticky is common to all, so sticky.
/// With [range, sticky], [sticky, range], [range, sticky]: range gets two
/// votes, sticky one, so range.
///
/// ```
/// let p = |names: &[&str]| -> Vec<(String, Vec<u8>)> {
///     names.iter().map(|n| (n.to_string(), Vec::new())).collect()
/// };
/// let (a, b, c) = (p(&["range", "sticky"]), p(&["sticky", "range"]), p(&["sticky"]));
/// assert_eq!(groups::choose_protocol(&[&a, &b, &c]).as_deref(), Some("sticky"));
/// let c = p(&["range", "sticky"]);
/// assert_eq!(groups::choose_protocol(&[&a, &b, &c]).as_deref(), Some("range"));
/// ```
pub fn choose_protocol(members: &[&[(String, Vec<u8>)]]) -> Option<String> {
    let leader = members.first()?;
    let supported_by_all = |name: &str| members.iter().all(|m| m.iter().any(|(p, _)| p == name));
    let candidates: Vec<&str> = leader
        .iter()
        .map(|(p, _)| p.as_str())
        .filter(|p| supported_by_all(p))
        .collect();
    let votes_for = |name: &str, m: &[(String, Vec<u8>)]| {
        let vote = m
            .iter()
            .map(|(p, _)| p.as_str())
            .find(|p| candidates.contains(p));
        vote == Some(name)
    };
    let votes = |name: &str| members.iter().filter(|m| votes_for(name, m)).count();
    // `max_by_key` keeps the last maximum; walk in reverse so the leader's
    // earlier preference wins a tie.
    candidates
        .iter()
        .rev()
        .max_by_key(|p| votes(p))
        .map(|p| p.to_string())
}
