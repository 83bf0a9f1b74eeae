//! Weighted rendezvous (highest random weight) hashing: which of a set of
//! nodes a room belongs to. Every node computes the same answer from the
//! same live set, and a node joining or leaving moves only the rooms that
//! hash to it (or were on it), in proportion to its weight.

/// 64-bit FNV-1a of `room`, a separator and `node`, then a final mix: the
/// same on every node and every build (unlike `std`'s hasher).
fn hash(room: &str, node: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in room.bytes().chain([0xff]).chain(node.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64's finaliser spreads FNV's weak low bits.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// `node`'s score for `room`: `weight / -ln(u)` with `u` uniform in (0, 1)
/// from the hash, so a node of twice the weight wins twice as often.
pub fn score(room: &str, node: &str, weight: f64) -> f64 {
    let u = ((hash(room, node) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    weight.max(f64::MIN_POSITIVE) / -u.ln()
}

/// The node of `nodes` (id, weight) that `room` belongs to; ties go to the
/// lower id. `None` when `nodes` is empty.
pub fn owner<'a>(room: &str, nodes: impl IntoIterator<Item = (&'a str, f64)>) -> Option<&'a str> {
    let mut best: Option<(&str, f64)> = None;
    for (node, weight) in nodes {
        let s = score(room, node, weight);
        best = match best {
            Some((b, bs)) if bs > s || (bs == s && b < node) => Some((b, bs)),
            _ => Some((node, s)),
        };
    }
    best.map(|(n, _)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rooms(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("room-{i}")).collect()
    }

    #[test]
    fn the_answer_does_not_depend_on_order() {
        for room in rooms(200) {
            let a = owner(&room, [("a", 1.0), ("b", 1.0), ("c", 1.0)]);
            let b = owner(&room, [("c", 1.0), ("a", 1.0), ("b", 1.0)]);
            assert_eq!(a, b);
        }
        assert_eq!(owner("r", []), None);
    }

    #[test]
    fn rooms_spread_evenly_and_by_weight() {
        let all = rooms(3000);
        let count = |nodes: &[(&str, f64)], who: &str| {
            all.iter().filter(|r| owner(r, nodes.iter().copied()) == Some(who)).count()
        };
        let even = [("n1", 1.0), ("n2", 1.0), ("n3", 1.0)];
        for n in ["n1", "n2", "n3"] {
            let c = count(&even, n);
            assert!((850..1150).contains(&c), "{n} got {c} of 3000");
        }
        let weighted = [("n1", 2.0), ("n2", 1.0), ("n3", 1.0)];
        let c = count(&weighted, "n1");
        assert!((1350..1650).contains(&c), "n1 of weight 2 got {c} of 3000");
    }

    #[test]
    fn a_new_node_takes_only_rooms_that_now_hash_to_it() {
        let three = [("n1", 1.0), ("n2", 1.0), ("n3", 1.0)];
        let four = [("n1", 1.0), ("n2", 1.0), ("n3", 1.0), ("n4", 1.0)];
        let mut moved = 0;
        for room in rooms(2000) {
            let before = owner(&room, three).unwrap();
            let after = owner(&room, four).unwrap();
            if before != after {
                assert_eq!(after, "n4", "{room} moved between old nodes");
                moved += 1;
            }
        }
        assert!((400..600).contains(&moved), "{moved} of 2000 moved, a quarter expected");
    }
}
