//! Sync groups (keepalived's `vrrp_sync_group`): instances that move together,
//! such as the public-side and the private-side instance of one director.
//!
//! Pure logic: given the transition of one member and the states of the
//! others, which orders the others get. The driver carries the orders out.
//! The rules, as keepalived applies them:
//! - a member that becomes Master takes the others from Backup to Master;
//! - a member that steps down from Master to Backup takes the others down too;
//! - while any member has a fault of its own, every other member is held in
//!   Fault; when no member has one any more, they return to Backup together.

use crate::router::State;

/// What a member of a group is told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupOrder {
    /// Take over (if in Backup).
    BecomeMaster,
    /// Step down (if Master).
    BecomeBackup,
    /// Hold in Fault (`true`) or release (`false`) because of another member.
    GroupFault(bool),
}

/// One member as the coordinator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// Its state.
    pub state: State,
    /// Whether it has a fault of its own (tracked script or interface).
    pub own_fault: bool,
    /// Whether it is held in Fault by the group now.
    pub group_fault: bool,
}

/// The orders for every member after member `moved` changed from `from`.
/// `members[moved]` already holds its new state.
pub fn orders(members: &[Member], moved: usize, from: State) -> Vec<(usize, GroupOrder)> {
    let to = members[moved].state;
    let mut orders = Vec::new();
    for (i, member) in members.iter().enumerate() {
        // A member is held in Fault while some other member has a fault of its own.
        let held = members
            .iter()
            .enumerate()
            .any(|(j, other)| j != i && other.own_fault);
        if held != member.group_fault {
            orders.push((i, GroupOrder::GroupFault(held)));
            continue;
        }
        if i == moved || held || member.own_fault {
            continue;
        }
        match (from, to, member.state) {
            (_, State::Master, State::Backup) => orders.push((i, GroupOrder::BecomeMaster)),
            (State::Master, State::Backup, State::Master) => {
                orders.push((i, GroupOrder::BecomeBackup))
            }
            _ => {}
        }
    }
    orders
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(state: State) -> Member {
        Member {
            state,
            own_fault: false,
            group_fault: false,
        }
    }

    #[test]
    fn a_member_taking_over_takes_the_group_along() {
        let members = [
            member(State::Master),
            member(State::Backup),
            member(State::Backup),
        ];
        assert_eq!(
            orders(&members, 0, State::Backup),
            vec![(1, GroupOrder::BecomeMaster), (2, GroupOrder::BecomeMaster)]
        );
    }

    #[test]
    fn a_member_stepping_down_takes_the_group_down() {
        let members = [member(State::Backup), member(State::Master)];
        assert_eq!(
            orders(&members, 0, State::Master),
            vec![(1, GroupOrder::BecomeBackup)]
        );
    }

    #[test]
    fn a_fault_holds_the_others_and_its_end_releases_them() {
        let mut members = [member(State::Fault), member(State::Master)];
        members[0].own_fault = true;
        assert_eq!(
            orders(&members, 0, State::Master),
            vec![(1, GroupOrder::GroupFault(true))]
        );
        members[1] = Member {
            state: State::Fault,
            own_fault: false,
            group_fault: true,
        };
        members[0] = member(State::Backup);
        assert_eq!(
            orders(&members, 0, State::Fault),
            vec![(1, GroupOrder::GroupFault(false))]
        );
    }

    #[test]
    fn settled_groups_get_no_orders() {
        let members = [member(State::Master), member(State::Master)];
        assert!(orders(&members, 1, State::Backup).is_empty());
        let members = [member(State::Backup), member(State::Backup)];
        assert!(orders(&members, 0, State::Initialize).is_empty());
    }
}
