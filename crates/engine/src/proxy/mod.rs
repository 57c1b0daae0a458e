//! Proxies per account. A number that always connects from the same exit is less likely to be
//! flagged, so an account with a proxy never silently goes direct: when its own proxy is down the
//! connection walks a fallback chain (another proxy of the same country, then one of the same
//! region, then direct only if the operator allowed it) and the hop it took is recorded.
//!
//! The pool of proxies is the fleet's own: every account's proxy can stand in for another's.

mod tunnel;

use std::fmt;

use crate::model::{Account, AccountId, SecretName};

pub use tunnel::{Failure, RouteError, Target, connect, url_with_credentials};

/// A proxy as configured on an account (no credentials in the URL; they come from the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyEntry {
    pub url: String,
    pub secret: Option<SecretName>,
    pub country: Option<String>,
    /// The account that brought this proxy into the pool.
    pub owner: AccountId,
}

impl ProxyEntry {
    pub fn of(account: &Account) -> Option<Self> {
        Some(Self {
            url: account.proxy_url.clone()?,
            secret: account.proxy_secret.clone(),
            country: account.country.clone(),
            owner: account.id,
        })
    }
}

/// Why a hop is in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HopKind {
    Own,
    SameCountry,
    Regional,
    /// No proxy: only when the operator allowed direct fallback.
    Direct,
}

/// One way to reach the endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub kind: HopKind,
    /// `None` for [`HopKind::Direct`].
    pub proxy: Option<ProxyEntry>,
}

impl fmt::Display for Hop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, proxy) = match (&self.kind, &self.proxy) {
            (HopKind::Direct, _) | (_, None) => return f.write_str("direct (proxy fallback)"),
            (HopKind::Own, Some(p)) => ("own proxy", p),
            (HopKind::SameCountry, Some(p)) => ("same-country proxy", p),
            (HopKind::Regional, Some(p)) => ("regional proxy", p),
        };
        write!(f, "{what} {}", proxy.url)?;
        if let Some(c) = &proxy.country {
            write!(f, " ({c})")?;
        }
        Ok(())
    }
}

/// The hops a connection of `account` tries, in order. Empty when the account has no proxy: it
/// connects directly, as configured. Each proxy URL appears once. Candidates of one tier are
/// rotated by account id so that a dead proxy's accounts spread over the others instead of all
/// landing on the first.
pub fn chain<'a>(
    account: &Account,
    pool: impl IntoIterator<Item = &'a ProxyEntry>,
    direct_fallback: bool,
) -> Vec<Hop> {
    let Some(own) = ProxyEntry::of(account) else {
        return Vec::new();
    };
    let mut hops = vec![Hop {
        kind: HopKind::Own,
        proxy: Some(own),
    }];
    if let Some(country) = account.country.as_deref() {
        let region = crate::country::region(country);
        let (mut same, mut regional) = (Vec::new(), Vec::new());
        for p in pool {
            let c = p.country.as_deref();
            if c == Some(country) {
                same.push(p);
            } else if region.is_some() && c.and_then(crate::country::region) == region {
                regional.push(p);
            }
        }
        for (kind, tier) in [(HopKind::SameCountry, same), (HopKind::Regional, regional)] {
            let fresh = tier
                .into_iter()
                .filter(|p| {
                    hops.iter()
                        .all(|h| h.proxy.as_ref().map(|x| &x.url) != Some(&p.url))
                })
                .collect();
            for p in rotated(fresh, account.id) {
                hops.push(Hop {
                    kind,
                    proxy: Some(p.clone()),
                });
            }
        }
    }
    if direct_fallback {
        hops.push(Hop {
            kind: HopKind::Direct,
            proxy: None,
        });
    }
    hops
}

/// Sorted by URL (stable whatever the pool order), then rotated by the account id.
fn rotated(mut tier: Vec<&ProxyEntry>, id: AccountId) -> Vec<&ProxyEntry> {
    tier.sort_by(|a, b| a.url.cmp(&b.url).then(a.owner.0.cmp(&b.owner.0)));
    tier.dedup_by(|a, b| a.url == b.url);
    if !tier.is_empty() {
        let n = tier.len();
        tier.rotate_left(id.0.rem_euclid(n as i64) as usize);
    }
    tier
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AccountKind;
    use crate::state::State;

    fn account(id: i64, country: Option<&str>, proxy: Option<&str>) -> Account {
        Account {
            id: AccountId(id),
            kind: AccountKind::Websocket,
            name: format!("a{id}"),
            url: Some("ws://127.0.0.1:1/x".into()),
            priority: 0,
            country: country.map(str::to_owned),
            proxy_url: proxy.map(str::to_owned),
            proxy_secret: None,
            headers: Vec::new(),
            muted: false,
            notify_live: false,
            desired_running: true,
            state: State::Stopped { reason: None },
            state_since: crate::time::from_ms(0),
            created_at: crate::time::from_ms(0),
            identity: None,
        }
    }

    fn pool(accounts: &[Account]) -> Vec<ProxyEntry> {
        accounts.iter().filter_map(ProxyEntry::of).collect()
    }

    fn urls(hops: &[Hop]) -> Vec<String> {
        hops.iter()
            .map(|h| h.proxy.as_ref().map_or("direct".into(), |p| p.url.clone()))
            .collect()
    }

    #[test]
    fn an_account_without_a_proxy_connects_directly() {
        let a = account(1, Some("ID"), None);
        let others = [account(2, Some("ID"), Some("socks5://p2:1080"))];
        assert!(chain(&a, &pool(&others), true).is_empty());
    }

    #[test]
    fn own_then_same_country_then_region_then_direct_only_if_allowed() {
        let fleet = [
            account(1, Some("ID"), Some("socks5://own:1080")),
            account(2, Some("ID"), Some("http://id-b:8080")),
            account(3, Some("SG"), Some("socks5://sg:1080")),
            account(4, Some("US"), Some("socks5://us:1080")),
            account(5, None, Some("socks5://nowhere:1080")),
            account(6, Some("MY"), Some("socks5://my:1080")),
        ];
        let p = pool(&fleet);
        let hops = chain(&fleet[0], &p, false);
        let kinds: Vec<HopKind> = hops.iter().map(|h| h.kind).collect();
        assert_eq!(
            kinds,
            [
                HopKind::Own,
                HopKind::SameCountry,
                HopKind::Regional,
                HopKind::Regional
            ]
        );
        assert_eq!(urls(&hops)[..2], ["socks5://own:1080", "http://id-b:8080"]);
        let regional: Vec<String> = urls(&hops)[2..].to_vec();
        assert!(regional.contains(&"socks5://sg:1080".to_owned()));
        assert!(regional.contains(&"socks5://my:1080".to_owned()));
        assert!(!urls(&hops).contains(&"socks5://us:1080".to_owned()));
        let with_direct = chain(&fleet[0], &p, true);
        assert_eq!(with_direct.last().map(|h| h.kind), Some(HopKind::Direct));
        assert_eq!(with_direct.len(), hops.len() + 1);
    }

    #[test]
    fn shared_proxies_appear_once_and_an_account_without_country_has_only_its_own() {
        let fleet = [
            account(1, Some("ID"), Some("socks5://shared:1080")),
            account(2, Some("ID"), Some("socks5://shared:1080")),
            account(3, Some("ID"), Some("socks5://other:1080")),
            account(4, Some("ID"), Some("socks5://other:1080")),
        ];
        let hops = chain(&fleet[0], &pool(&fleet), false);
        assert_eq!(urls(&hops), ["socks5://shared:1080", "socks5://other:1080"]);
        let lone = account(9, None, Some("socks5://lone:1080"));
        assert_eq!(
            urls(&chain(&lone, &pool(&fleet), false)),
            ["socks5://lone:1080"]
        );
    }

    #[test]
    fn accounts_of_a_dead_proxy_spread_over_the_others() {
        let mut fleet = vec![
            account(100, Some("ID"), Some("socks5://b:1")),
            account(101, Some("ID"), Some("socks5://c:1")),
            account(102, Some("ID"), Some("socks5://d:1")),
        ];
        for id in 0..30 {
            fleet.push(account(id, Some("ID"), Some("socks5://dead:1")));
        }
        let p = pool(&fleet);
        let mut firsts = std::collections::HashMap::new();
        for a in &fleet[3..] {
            let hops = chain(a, &p, false);
            *firsts.entry(urls(&hops)[1].clone()).or_insert(0) += 1;
        }
        assert_eq!(firsts.len(), 3, "{firsts:?}");
        assert!(firsts.values().all(|&n| n == 10), "{firsts:?}");
    }

    #[test]
    fn hops_describe_themselves_without_credentials() {
        let a = account(1, Some("ID"), Some("socks5://own:1080"));
        let hops = chain(&a, &[], true);
        assert_eq!(hops[0].to_string(), "own proxy socks5://own:1080 (ID)");
        assert_eq!(hops[1].to_string(), "direct (proxy fallback)");
    }
}
