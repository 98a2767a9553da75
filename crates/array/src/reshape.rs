//! How a reshape becomes blockwise: which axes of the old shape turn into which axes of
//! the new one, and the chunks that make every new block exactly one old block.
//!
//! Reshaping is in C order (numpy's default). The axes of both shapes fall into
//! consecutive *groups* whose lengths multiply to the same number: an axis kept
//! (`[6] → [6]`), axes merged (`[4, 5] → [20]`), an axis split (`[20] → [4, 5]`), or
//! several into several (`[6, 4] → [4, 6]`); an axis of length 1 can also be a group
//! alone on one side. Within a group, only the first axis may be cut into several
//! blocks, and each block along it must hold whole rows of the group's other axes on
//! both sides: then the elements of an old block are, in C order, exactly those of
//! one new block. The old array is rechunked to the nearest such chunks when it is not
//! cut that way already, as Dask's `reshape` does: a merge needs the merged trailing
//! axes whole, a split needs blocks along the split axis that are multiples of the
//! new trailing axes, and a many-into-many group is taken whole.

use crate::chunks::Chunks;

/// Old axes `old` become new axes `new` (ranges of axis numbers).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Group {
    pub old: std::ops::Range<usize>,
    pub new: std::ops::Range<usize>,
}

/// The groups of a reshape from `old` to `new`, whose element counts are equal and
/// not zero.
pub(crate) fn groups(old: &[usize], new: &[usize]) -> Vec<Group> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < old.len() || j < new.len() {
        let (o, n) = (old.get(i).copied(), new.get(j).copied());
        if o == Some(1) && n != Some(1) {
            out.push(Group { old: i..i + 1, new: j..j });
            i += 1;
            continue;
        }
        if n == Some(1) && o != Some(1) {
            out.push(Group { old: i..i, new: j..j + 1 });
            j += 1;
            continue;
        }
        let (i0, j0) = (i, j);
        let (mut po, mut pn) = (old[i], new[j]);
        i += 1;
        j += 1;
        while po != pn {
            if po < pn {
                po *= old[i];
                i += 1;
            } else {
                pn *= new[j];
                j += 1;
            }
        }
        out.push(Group { old: i0..i, new: j0..j });
    }
    out
}

/// The chunks the old array needs for the reshape to be blockwise (`chunks` itself
/// when they already do), and the chunks of the new array.
pub(crate) fn plan(old: &[usize], new: &[usize], chunks: &Chunks, groups: &[Group]) -> (Chunks, Chunks) {
    let mut need: Vec<Vec<usize>> = chunks.axes().to_vec();
    let mut made: Vec<Vec<usize>> = vec![Vec::new(); new.len()];
    for g in groups {
        let trailing = |shape: &[usize], r: &std::ops::Range<usize>| shape[r.clone()].iter().skip(1).product::<usize>();
        let (old_rest, new_rest) = (trailing(old, &g.old), trailing(new, &g.new));
        for a in g.old.clone().skip(1) {
            need[a] = vec![old[a]];
        }
        for b in g.new.clone().skip(1) {
            made[b] = vec![new[b]];
        }
        match (g.old.len(), g.new.len()) {
            (0, _) => made[g.new.start] = vec![1],
            (_, 0) => need[g.old.start] = vec![1],
            _ => {
                let lead = g.old.start;
                if old_rest > 1 && new_rest > 1 {
                    need[lead] = vec![old[lead]];
                } else if need[lead].iter().any(|c| c % new_rest != 0) {
                    // Blocks of whole new rows, as close to the old length as they come.
                    let first = need[lead][0];
                    let c = ((first + new_rest / 2) / new_rest).max(1) * new_rest;
                    need[lead] = Chunks::regular(&[old[lead]], &[c]).expect("a length and a chunk above 0").axes()[0].clone();
                }
                made[g.new.start] = need[lead].iter().map(|c| c * old_rest / new_rest).collect();
            }
        }
    }
    (Chunks::from_axes(need), Chunks::from_axes(made))
}

/// The block of the old array that holds new block `index`.
pub(crate) fn old_block(groups: &[Group], old_ndim: usize, index: &[usize]) -> Vec<usize> {
    let mut at = vec![0; old_ndim];
    for g in groups {
        if !g.old.is_empty() && !g.new.is_empty() {
            at[g.old.start] = index[g.new.start];
        }
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(old: std::ops::Range<usize>, new: std::ops::Range<usize>) -> Group {
        Group { old, new }
    }

    #[test]
    fn axes_group_into_kept_merged_split_and_unit_axes() {
        assert_eq!(groups(&[4, 5], &[20]), vec![g(0..2, 0..1)]);
        assert_eq!(groups(&[20], &[4, 5]), vec![g(0..1, 0..2)]);
        assert_eq!(groups(&[6, 4], &[4, 6]), vec![g(0..2, 0..2)]);
        assert_eq!(groups(&[3, 1, 4], &[3, 4, 1]), vec![g(0..1, 0..1), g(1..2, 1..1), g(2..3, 1..2), g(3..3, 2..3)]);
        assert_eq!(groups(&[2, 3, 4], &[6, 2, 2]), vec![g(0..2, 0..1), g(2..3, 1..3)]);
    }

    #[test]
    fn chunks_are_changed_only_where_a_block_would_not_be_whole_rows() {
        let plan_of = |old: &[usize], new: &[usize], chunks: &[usize]| {
            let c = Chunks::regular(old, chunks).unwrap();
            let (need, made) = plan(old, new, &c, &groups(old, new));
            (need.axes().to_vec(), made.axes().to_vec())
        };
        // A merge keeps the leading chunks and needs the trailing axis whole.
        assert_eq!(plan_of(&[10, 6], &[60], &[4, 6]), (vec![vec![4, 4, 2], vec![6]], vec![vec![24, 24, 12]]));
        assert_eq!(plan_of(&[10, 6], &[60], &[4, 3]).0, vec![vec![4, 4, 2], vec![6]]);
        // A split needs blocks of whole new rows: 7 becomes 6 (two rows of 3).
        assert_eq!(plan_of(&[24], &[8, 3], &[7]), (vec![vec![6, 6, 6, 6]], vec![vec![2, 2, 2, 2], vec![3]]));
        assert_eq!(plan_of(&[24], &[8, 3], &[12]), (vec![vec![12, 12]], vec![vec![4, 4], vec![3]]));
        // Several into several: whole.
        assert_eq!(plan_of(&[6, 4], &[4, 6], &[2, 2]), (vec![vec![6], vec![4]], vec![vec![4], vec![6]]));
    }
}
