//! ISO 3166-1 alpha-2 country codes. Accounts carry a country so proxy fallback (same country,
//! then region) can pick a nearby exit; a typo here would silently send a number through the wrong
//! country, so codes are checked against the official list rather than just their shape.

/// All 249 officially assigned ISO 3166-1 alpha-2 codes, space separated, sorted.
const CODES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ \
BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER \
ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM \
IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF \
MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK \
PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD \
TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

/// Returns the canonical upper-case code if `input` (any case, surrounding spaces allowed) is assigned.
pub fn normalize(input: &str) -> Option<String> {
    let code = input.trim().to_ascii_uppercase();
    (code.len() == 2 && CODES.split(' ').any(|c| c == code)).then_some(code)
}

/// Regions for proxy fallback: when no proxy of an account's own country works, one of the same
/// region keeps the exit nearby. Coarse on purpose (UN geoscheme, merged where fleets rarely
/// have proxies); Antarctica and uninhabited territories have none.
const REGIONS: &[(&str, &str)] = &[
    ("Southeast Asia", "BN ID KH LA MM MY PH SG TH TL VN"),
    ("South Asia", "AF BD BT IN IR LK MV NP PK"),
    ("East Asia", "CN HK JP KP KR MN MO TW"),
    ("Central Asia", "KG KZ TJ TM UZ"),
    (
        "Middle East",
        "AE AM AZ BH CY GE IL IQ JO KW LB OM PS QA SA SY TR YE",
    ),
    ("North Africa", "DZ EG EH LY MA SD TN"),
    (
        "Sub-Saharan Africa",
        "AO BF BI BJ BW CD CF CG CI CM CV DJ ER ET GA GH GM GN GQ GW KE KM LR LS MG ML MR MU MW MZ \
         NA NE NG RE RW SC SH SL SN SO SS ST SZ TD TG TZ UG YT ZA ZM ZW",
    ),
    (
        "Europe",
        "AD AL AT AX BA BE BG BY CH CZ DE DK EE ES FI FO FR GB GG GI GR HR HU IE IM IS IT JE LI LT \
         LU LV MC MD ME MK MT NL NO PL PT RO RS RU SE SI SJ SK SM UA VA",
    ),
    ("North America", "BM CA GL PM UM US"),
    (
        "Latin America and the Caribbean",
        "AG AI AR AW BB BL BO BQ BR BS BZ CL CO CR CU CW DM DO EC FK GD GF GP GS GT GY HN HT JM KN \
         KY LC MF MQ MS MX NI PA PE PR PY SR SV SX TC TT UY VC VE VG VI",
    ),
    (
        "Oceania",
        "AS AU CC CK CX FJ FM GU HM KI MH MP NC NF NR NU NZ PF PG PN PW SB TK TO TV VU WF WS",
    ),
];

/// The region of a canonical code (as returned by [`normalize`]), if it has one.
pub fn region(code: &str) -> Option<&'static str> {
    REGIONS
        .iter()
        .find(|(_, codes)| codes.split_whitespace().any(|c| c == code))
        .map(|(name, _)| *name)
}

#[cfg(test)]
mod tests {
    use super::{normalize, region};

    #[test]
    fn list_is_complete_and_sorted() {
        let codes: Vec<&str> = super::CODES.split(' ').collect();
        assert_eq!(codes.len(), 249);
        assert!(codes.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn accepts_assigned_codes_in_any_case() {
        assert_eq!(normalize("id").as_deref(), Some("ID"));
        assert_eq!(normalize(" Sg ").as_deref(), Some("SG"));
    }

    #[test]
    fn rejects_unassigned_and_malformed() {
        for bad in ["XX", "UK", "IDN", "", "I", "🇮🇩"] {
            assert_eq!(normalize(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn regions_use_assigned_codes_and_never_overlap() {
        let mut seen = std::collections::HashSet::new();
        for (name, codes) in super::REGIONS {
            for c in codes.split_whitespace() {
                assert!(normalize(c).is_some(), "{c} in {name} is not assigned");
                assert!(seen.insert(c), "{c} is in two regions");
            }
        }
        assert_eq!(region("ID"), Some("Southeast Asia"));
        assert_eq!(region("SG"), region("MY"));
        assert_ne!(region("ID"), region("US"));
        assert_eq!(region("AQ"), None);
    }
}
