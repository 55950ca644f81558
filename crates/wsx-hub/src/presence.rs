//! Presence: who is in a room, and how its members hear of changes.
//!
//! Filling a room of N members must cost O(N), not O(N²): a join is not
//! sent to every member as it happens, and a join's answer does not list a
//! large room. Each node coalesces the joins and leaves of its members per
//! room into one `presence` packet per presence interval (100 ms by
//! default), with the room's member count; the names go with it only in
//! rooms that want them ([`PresenceMode::Names`]) and are small enough
//! ([`PresenceSettings::names_up_to`]). Larger rooms get counts, at most
//! once per count interval (1 s by default: a count that changes ten times
//! a second tells an audience nothing, and costs a packet per member), and
//! their member lists are read a page at a time.
//!
//! This file holds the rules (the modes, the settings, the pending
//! changes of a room and what a packet becomes for a room); the hub runs
//! them (`Hub::flush_presence`).

use crate::protocol::{ConnId, Member, PresenceDiff, PresencePacket};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// How presence works in a room (see [`crate::HubBuilder::room_presence`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PresenceMode {
    /// Members hear who joins and leaves, by name, while the room has at
    /// most [`crate::HubBuilder::presence_names_up_to`] members (then
    /// counts), and
    /// may read its member list.
    #[default]
    Names,
    /// Members hear the member count only (an audience: 100,000 viewers
    /// want a count, not names); member lists are refused.
    Count,
    /// No presence: members are not recorded, no `presence` packets, and a
    /// join's answer holds the room's name alone.
    Off,
}

/// Says each room's presence mode.
pub(crate) type ModeFn = Arc<dyn Fn(&str) -> PresenceMode + Send + Sync>;

/// Presence settings of a hub, as [`crate::HubBuilder::room_presence`],
/// [`crate::HubBuilder::presence_interval`],
/// [`crate::HubBuilder::presence_count_interval`] and
/// [`crate::HubBuilder::presence_names_up_to`] set them.
#[derive(Clone)]
pub(crate) struct PresenceSettings {
    /// How often a room's changes are sent at most (default 100 ms).
    pub(crate) interval: Duration,
    /// How often a room without names gets its count at most (default
    /// 1 s).
    pub(crate) count_interval: Duration,
    /// A room with more members gets counts without names, and a join's
    /// answer without the member list (default 1,000).
    pub(crate) names_up_to: u64,
    /// Each room's mode (default: [`PresenceMode::Names`] everywhere).
    pub(crate) mode: Option<ModeFn>,
}

impl Default for PresenceSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(100),
            count_interval: Duration::from_secs(1),
            names_up_to: 1000,
            mode: None,
        }
    }
}

impl std::fmt::Debug for PresenceSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresenceSettings")
            .field("interval", &self.interval)
            .field("count_interval", &self.count_interval)
            .field("names_up_to", &self.names_up_to)
            .finish_non_exhaustive()
    }
}

impl PresenceSettings {
    /// The mode of `room`.
    pub(crate) fn mode(&self, room: &str) -> PresenceMode {
        self.mode.as_ref().map_or(PresenceMode::Names, |f| f(room))
    }

    /// Whether members of `room`, of `count` members, are told names.
    pub(crate) fn names(&self, room: &str, count: u64) -> bool {
        self.mode(room) == PresenceMode::Names && count <= self.names_up_to
    }

    /// What `p` becomes for the members of its room on this node: nothing
    /// in a room without presence, no names where the room does not send
    /// them, no packet at all for a diff with nothing left to say.
    pub(crate) fn shape(&self, mut p: PresencePacket) -> Option<PresencePacket> {
        match self.mode(&p.room) {
            PresenceMode::Off => return None,
            _ if !self.names(&p.room, p.count) => p.diff = None,
            _ => {}
        }
        Some(p)
    }
}

/// The changes of this node's members not sent yet, per room: for each
/// connection, whether it is in the room after them. A connection that
/// joined and left within one interval is sent as a leave (a member that
/// listed the room in between may hold it); one that left and joined
/// again, as a join.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// Per room and connection: its metadata, and whether it is in the
    /// room (the connection id once: a burst holds one entry per joiner).
    rooms: HashMap<String, BTreeMap<ConnId, (Value, bool)>>,
}

impl Pending {
    /// `member` joined (`true`) or left `room`.
    pub(crate) fn note(&mut self, room: &str, member: Member, joined: bool) {
        let changes = match self.rooms.get_mut(room) {
            Some(c) => c,
            None => self.rooms.entry(room.to_owned()).or_default(),
        };
        changes.insert(member.conn, (member.meta, joined));
    }

    /// Put back changes taken but not sent: those noted since win.
    pub(crate) fn restore(&mut self, room: String, diff: PresenceDiff) {
        let changes = self.rooms.entry(room).or_default();
        let all = diff.joins.into_iter().map(|m| (m, true)).chain(diff.leaves.into_iter().map(|m| (m, false)));
        for (member, joined) in all {
            changes.entry(member.conn).or_insert((member.meta, joined));
        }
    }

    /// Whether nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }

    /// Take every room's changes.
    pub(crate) fn take(&mut self) -> Vec<(String, PresenceDiff)> {
        std::mem::take(&mut self.rooms)
            .into_iter()
            .map(|(room, changes)| {
                let mut diff = PresenceDiff::default();
                for (conn, (meta, joined)) in changes {
                    if joined { &mut diff.joins } else { &mut diff.leaves }.push(Member { conn, meta });
                }
                (room, diff)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(conn: &str) -> Member {
        Member { conn: conn.into(), meta: serde_json::Value::Null }
    }

    #[test]
    fn the_last_change_of_a_connection_wins() {
        let mut p = Pending::default();
        p.note("r", m("a.1"), true);
        p.note("r", m("a.2"), true);
        p.note("r", m("a.2"), false); // joined and left: a leave
        p.note("r", m("a.3"), false);
        p.note("r", m("a.3"), true); // left and came back: a join
        p.note("s", m("a.1"), true);
        let mut out = p.take();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        assert!(p.is_empty());
        assert_eq!(out[0].0, "r");
        assert_eq!(out[0].1.joins, vec![m("a.1"), m("a.3")]);
        assert_eq!(out[0].1.leaves, vec![m("a.2")]);
        assert_eq!(out[1].1.joins, vec![m("a.1")]);
        // Changes put back yield to those noted since.
        p.note("r", m("a.1"), false);
        p.restore("r".into(), out.remove(0).1);
        let back = p.take().remove(0).1;
        assert_eq!(back.joins, vec![m("a.3")]);
        assert_eq!(back.leaves, vec![m("a.1"), m("a.2")]);
    }

    #[test]
    fn shape_follows_the_mode_and_the_size() {
        let mut s = PresenceSettings { names_up_to: 2, ..Default::default() };
        s.mode = Some(Arc::new(|room: &str| match room {
            "quiet" => PresenceMode::Off,
            "stage" => PresenceMode::Count,
            _ => PresenceMode::Names,
        }));
        let diff = Some(PresenceDiff { joins: vec![m("a.1")], leaves: vec![] });
        let p = |room: &str, count| PresencePacket { room: room.into(), count, diff: diff.clone() };
        assert_eq!(s.shape(p("r", 2)), Some(p("r", 2)));
        assert_eq!(s.shape(p("r", 3)).unwrap().diff, None, "over names_up_to: counts only");
        assert_eq!(s.shape(p("stage", 1)).unwrap().diff, None);
        assert_eq!(s.shape(p("quiet", 1)), None);
    }
}
