//! Pure: opaque page tokens and paging by sort key. A token holds the capability and the key of
//! the last item sent, so the next page starts strictly after it: bindings added or removed
//! between calls never shift, repeat or skip items that exist throughout (offsets would).

use std::collections::BTreeMap;
use std::ops::Bound;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Items per page when the request names no size.
pub const DEFAULT_SIZE: usize = 200;
/// Largest page served, whatever the request asks.
pub const MAX_SIZE: usize = 2000;

const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Token {
    /// Format version.
    v: u32,
    /// The capability the token was issued by.
    c: String,
    /// The sort key of the last item sent.
    k: Vec<String>,
}

/// Why a token cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token this connector issued.
    #[error("the page token is not one this connector issued")]
    Malformed,
    /// Issued by another capability.
    #[error("the page token was issued by {0}, not by this capability")]
    OtherCapability(String),
}

/// The token that continues after `key`.
pub fn token(capability: &str, key: &[String]) -> String {
    let t = Token { v: VERSION, c: capability.to_string(), k: key.to_vec() };
    // Serializing strings to JSON cannot fail.
    let json = serde_json::to_vec(&t).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

/// The key a token continues after.
pub fn after(capability: &str, token: &str) -> Result<Vec<String>, TokenError> {
    let bytes =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.trim()).map_err(|_| TokenError::Malformed)?;
    let t: Token = serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)?;
    if t.v != VERSION {
        return Err(TokenError::Malformed);
    }
    if t.c != capability {
        return Err(TokenError::OtherCapability(t.c));
    }
    Ok(t.k)
}

/// The page size to serve for a requested one: [`DEFAULT_SIZE`] when absent or not positive,
/// at most [`MAX_SIZE`].
pub fn size(requested: Option<i64>) -> usize {
    match requested {
        Some(n) if n > 0 => (n as u64).min(MAX_SIZE as u64) as usize,
        _ => DEFAULT_SIZE,
    }
}

/// One page of items ordered by key: up to `size` items whose key is after `after` (from the
/// start when `None`), and the key to continue after when more remain.
pub fn slice<'a, T>(
    items: impl IntoIterator<Item = (Vec<String>, &'a T)>,
    after: Option<&[String]>,
    size: usize,
) -> (Vec<&'a T>, Option<Vec<String>>)
where
    T: 'a,
{
    let mut page = Vec::new();
    let mut last: Option<Vec<String>> = None;
    for (key, item) in items {
        if after.is_some_and(|a| key.as_slice() <= a) {
            continue;
        }
        if page.len() == size {
            // One more exists: the page is full and the next starts after its last item.
            return (page, last);
        }
        page.push(item);
        last = Some(key);
    }
    (page, None)
}

/// A page of a map's entries, and the key to continue after when more remain.
pub type Range<'a, V> = (Vec<(&'a Vec<String>, &'a V)>, Option<Vec<String>>);

/// One page of a map ordered by key: up to `size` entries whose key is after `after` (from the
/// start when `None`), and the key to continue after when more remain. The same page as
/// [`slice`] over the map's entries, reading only the page (and one more key).
pub fn range<'a, V>(items: &'a BTreeMap<Vec<String>, V>, after: Option<&[String]>, size: usize) -> Range<'a, V> {
    let rest = match after {
        Some(a) => items.range::<[String], _>((Bound::Excluded(a), Bound::Unbounded)),
        None => items.range::<[String], _>(..),
    };
    let mut page: Vec<_> = rest.take(size.saturating_add(1)).collect();
    let next = match page.len() > size {
        true => {
            page.truncate(size);
            page.last().map(|(k, _)| (*k).clone())
        }
        false => None,
    };
    (page, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<(Vec<String>, String)> {
        (0..n).map(|i| (vec![format!("k{i:03}")], format!("item{i}"))).collect()
    }

    fn pages(items: &[(Vec<String>, String)], size: usize) -> Vec<Vec<String>> {
        let mut out = vec![];
        let mut after: Option<Vec<String>> = None;
        loop {
            let (page, next) = slice(items.iter().map(|(k, v)| (k.clone(), v)), after.as_deref(), size);
            out.push(page.into_iter().cloned().collect());
            match next {
                Some(k) => after = Some(k),
                None => return out,
            }
        }
    }

    #[test]
    fn pages_cover_everything_once_and_the_last_has_no_token() {
        let items = keys(7);
        let p = pages(&items, 3);
        assert_eq!(p.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 3, 1]);
        assert_eq!(p.concat(), items.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>());
        // Exactly full: no empty trailing page.
        assert_eq!(pages(&keys(6), 3).len(), 2);
        assert_eq!(pages(&keys(0), 3), vec![Vec::<String>::new()]);
    }

    #[test]
    fn a_page_continues_after_its_key_when_items_come_and_go() {
        let items = keys(6);
        let (first, next) = slice(items.iter().map(|(k, v)| (k.clone(), v)), None, 3);
        assert_eq!(first, vec!["item0", "item1", "item2"]);
        let next = next.expect("more");
        // Between the calls item1 goes and a new item sorts before the cursor, another after.
        let mut changed: Vec<_> = items.iter().filter(|(k, _)| k[0] != "k001").cloned().collect();
        changed.push((vec!["k000a".into()], "new-before".into()));
        changed.push((vec!["k004a".into()], "new-after".into()));
        changed.sort();
        let (second, _) = slice(changed.iter().map(|(k, v)| (k.clone(), v)), Some(&next), 10);
        assert_eq!(second, vec!["item3", "item4", "new-after", "item5"]);
    }

    #[test]
    fn tokens_round_trip_and_refuse_others() {
        let key = vec!["User:alice".to_string(), "team-a".into(), "ClusterRole:edit".into()];
        let t = token("find_entitlement_associations", &key);
        assert!(!t.contains("alice"), "opaque: {t}");
        assert_eq!(after("find_entitlement_associations", &t), Ok(key));
        assert_eq!(
            after("list_accounts", &t),
            Err(TokenError::OtherCapability("find_entitlement_associations".into()))
        );
        assert_eq!(after("list_accounts", "not a token"), Err(TokenError::Malformed));
        assert_eq!(after("list_accounts", "e30"), Err(TokenError::Malformed)); // {}
    }

    /// A range of a map is the page `slice` makes of its entries, for every size and cursor,
    /// cursors that are no key included (an item gone since, a token's key of another length).
    #[test]
    fn a_range_of_a_map_is_the_same_page_as_a_slice() {
        let map: BTreeMap<Vec<String>, String> =
            keys(9).into_iter().map(|(k, v)| (vec![k[0].clone(), "x".into()], v)).collect();
        let cursors: Vec<Option<Vec<String>>> = std::iter::once(None)
            .chain(map.keys().cloned().map(Some))
            .chain([
                Some(vec!["k003".into()]),
                Some(vec!["k003a".into(), "x".into()]),
                Some(vec!["k003".into(), "x".into(), "more".into()]),
                Some(vec![]),
                Some(vec!["zzz".into()]),
            ])
            .collect();
        for size in [1, 2, 3, 8, 9, 10, 2000] {
            for after in &cursors {
                let want = slice(map.iter().map(|(k, v)| (k.clone(), v)), after.as_deref(), size);
                let (page, next) = range(&map, after.as_deref(), size);
                let got = (page.into_iter().map(|(_, v)| v).collect::<Vec<_>>(), next);
                assert_eq!(got, want, "size {size}, after {after:?}");
            }
        }
        assert_eq!(range(&BTreeMap::<Vec<String>, ()>::new(), None, 1), (vec![], None));
    }

    #[test]
    fn sizes_are_bounded() {
        assert_eq!(size(None), DEFAULT_SIZE);
        assert_eq!(size(Some(0)), DEFAULT_SIZE);
        assert_eq!(size(Some(-5)), DEFAULT_SIZE);
        assert_eq!(size(Some(7)), 7);
        assert_eq!(size(Some(1_000_000)), MAX_SIZE);
    }
}
