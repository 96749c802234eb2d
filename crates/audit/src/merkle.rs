//! The RFC 6962 (RFC 9162 §2.1) Merkle tree over the audit log's leaves:
//! roots, inclusion proofs and consistency proofs, and their checks.
//!
//! Leaves are given as their leaf hashes (`SHA-256(0x00 || entry)`), the
//! form the log stores, so the tree is computed without the entries.

use sha2::{Digest, Sha256};

use crate::Hash;

/// `SHA-256(0x00 || data)`: the hash of one leaf.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    Hash(h.finalize().into())
}

/// `SHA-256(0x01 || left || right)`: the hash of an inner node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left.0);
    h.update(right.0);
    Hash(h.finalize().into())
}

/// The root of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash {
    Hash(Sha256::digest([]).into())
}

/// The largest power of two smaller than `n` (for `n >= 2`).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// The tree head of `leaves`, computed recursively (RFC 9162 §2.1.1).
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The tree head of a growing log, kept in O(log n): the roots of its
/// perfect subtrees, left to right. How the log's writer and verifier get
/// the root at every size without holding the leaves.
#[derive(Debug, Clone, Default)]
pub struct CompactTree {
    /// (root, leaf count) of each perfect subtree, sizes strictly falling.
    peaks: Vec<(Hash, u64)>,
    size: u64,
}

impl CompactTree {
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn push(&mut self, leaf: Hash) {
        let mut node = (leaf, 1u64);
        while let Some(&(left, count)) = self.peaks.last() {
            if count != node.1 {
                break;
            }
            self.peaks.pop();
            node = (node_hash(&left, &node.0), count * 2);
        }
        self.peaks.push(node);
        self.size += 1;
    }

    /// The root over every leaf pushed so far.
    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(&(mut acc, _)) = peaks.next() else { return empty_root() };
        for (left, _) in peaks {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

/// The audit path of leaf `index` in the tree of `leaves` (RFC 9162 §2.1.3.1).
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 || index >= n {
        return Vec::new();
    }
    let k = split(n);
    if index < k {
        let mut path = inclusion_proof(&leaves[..k], index);
        path.push(root(&leaves[k..]));
        path
    } else {
        let mut path = inclusion_proof(&leaves[k..], index - k);
        path.push(root(&leaves[..k]));
        path
    }
}

/// Whether `proof` shows `leaf` at `index` in the tree of `size` leaves
/// whose root is `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s, mut r) = (index, size - 1, *leaf);
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

/// The proof that the tree of the first `old` leaves is a prefix of the
/// tree of `leaves` (RFC 9162 §2.1.4.1); empty when `old` is 0 or all.
pub fn consistency_proof(leaves: &[Hash], old: usize) -> Vec<Hash> {
    if old == 0 || old >= leaves.len() {
        return Vec::new();
    }
    subproof(old, leaves, true)
}

fn subproof(m: usize, leaves: &[Hash], whole: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if whole { Vec::new() } else { vec![root(leaves)] };
    }
    let k = split(n);
    if m <= k {
        let mut proof = subproof(m, &leaves[..k], whole);
        proof.push(root(&leaves[k..]));
        proof
    } else {
        let mut proof = subproof(m - k, &leaves[k..], false);
        proof.push(root(&leaves[..k]));
        proof
    }
}

/// Whether `proof` shows the tree (`old_size`, `old_root`) is a prefix of
/// (`new_size`, `new_root`): nothing the old head covered was changed,
/// removed or reordered (RFC 9162 §2.1.4.2).
pub fn verify_consistency(old_size: u64, new_size: u64, old_root: &Hash, new_root: &Hash, proof: &[Hash]) -> bool {
    if old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    if old_size == 0 {
        return proof.is_empty();
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else { return false };
    let (mut f, mut s) = (old_size - 1, new_size - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && fr == *old_root && sr == *new_root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(format!("entry {i}").as_bytes())).collect()
    }

    #[test]
    fn matches_the_rfc_6962_reference_tree() {
        // The eight leaves of the certificate-transparency reference tests.
        let data: [&[u8]; 8] = [
            b"",
            b"\x00",
            b"\x10",
            b"\x20\x21",
            b"\x30\x31",
            b"\x40\x41\x42\x43",
            b"\x50\x51\x52\x53\x54\x55\x56\x57",
            b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
        ];
        let leaves: Vec<Hash> = data.iter().map(|d| leaf_hash(d)).collect();
        assert_eq!(leaves[0].to_string(), "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
        assert_eq!(root(&leaves).to_string(), "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328");
        assert_eq!(empty_root().to_string(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn the_compact_tree_has_the_root_of_every_prefix() {
        let all = leaves(70);
        let mut tree = CompactTree::default();
        assert_eq!(tree.root(), empty_root());
        for (i, leaf) in all.iter().enumerate() {
            tree.push(*leaf);
            assert_eq!(tree.root(), root(&all[..=i]), "size {}", i + 1);
        }
    }

    #[test]
    fn inclusion_proofs_hold_for_every_leaf_and_fail_for_another() {
        for n in 1..=33 {
            let all = leaves(n);
            let head = root(&all);
            for i in 0..n {
                let proof = inclusion_proof(&all, i);
                assert!(verify_inclusion(i as u64, n as u64, &all[i], &proof, &head), "leaf {i} of {n}");
                let other = leaf_hash(b"not in the log");
                assert!(!verify_inclusion(i as u64, n as u64, &other, &proof, &head));
            }
        }
    }

    #[test]
    fn consistency_proofs_hold_between_every_pair_of_sizes() {
        let all = leaves(33);
        for n in 1..=all.len() {
            for m in 1..=n {
                let proof = consistency_proof(&all[..n], m);
                let (old, new) = (root(&all[..m]), root(&all[..n]));
                assert!(verify_consistency(m as u64, n as u64, &old, &new, &proof), "{m} → {n}");
            }
        }
    }

    #[test]
    fn a_changed_prefix_fails_its_consistency_proof() {
        let all = leaves(20);
        let mut rewritten = all.clone();
        rewritten[3] = leaf_hash(b"rewritten");
        let proof = consistency_proof(&rewritten, 8);
        assert!(!verify_consistency(8, 20, &root(&all[..8]), &root(&rewritten), &proof));
    }
}
