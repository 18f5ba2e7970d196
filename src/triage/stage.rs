//! An alert's attack stage from general facts about its rule: words in the rule name that
//! say what it detects (`CnC`, `Exploit`, `CVE-`, `Brute`…), the rule's family (the name's
//! first words: `ET SCAN`, `ET EXPLOIT`, `GPL ATTACK_RESPONSE`, `SURICATA`…) and the
//! classtype behind `alert.category`. Words win over the family, the family over the
//! category; nothing known is `neutral`. The tables come from the configuration
//! (`[triage.stage_words]`, `[triage.stage_families]`, `[triage.stage_categories]`).

use crate::event::triage::Stage;

#[derive(Debug, Clone, Default)]
pub struct StageMap {
    /// Whole words of the rule name (case-insensitive); a word ending in `-` matches as a
    /// prefix (`CVE-`).
    pub words: Vec<(String, Stage)>,
    /// Name prefixes, longest first.
    pub families: Vec<(String, Stage)>,
    /// `alert.category` texts (case-insensitive).
    pub categories: Vec<(String, Stage)>,
    /// MITRE ATT&CK tactic ids of ET `alert.metadata.mitre_tactic_id` (`TA0011`).
    pub tactics: Vec<(String, Stage)>,
}

/// What a rule's ET `metadata` says, when it says it.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleMeta {
    /// `mitre_tactic_id` values, as written.
    pub tactics: Vec<String>,
    /// `signature_severity`: Critical 1.5, Major 1.2, Minor 0.8, Informational 0.5.
    pub severity_factor: f64,
    /// `confidence`: High 1.2, Medium 1, Low 0.7.
    pub confidence_factor: f64,
}

/// The rule metadata of an EVE alert line (`alert.metadata`, as ET rules carry it), read
/// from the raw line without parsing the rest of it. `None` when there is none.
pub fn rule_meta(raw: &str) -> Option<RuleMeta> {
    let alert = raw.find("\"alert\":{")?;
    let at = alert + raw[alert..].find("\"metadata\":")? + "\"metadata\":".len();
    let v: serde_json::Value = serde_json::Deserializer::from_str(&raw[at..]).into_iter().next()?.ok()?;
    let first = |k: &str| -> Option<String> {
        match &v[k] {
            serde_json::Value::Array(a) => a.first().and_then(|x| x.as_str()).map(str::to_ascii_lowercase),
            serde_json::Value::String(x) => Some(x.to_ascii_lowercase()),
            _ => None,
        }
    };
    let tactics: Vec<String> = match &v["mitre_tactic_id"] {
        serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect(),
        serde_json::Value::String(x) => vec![x.clone()],
        _ => Vec::new(),
    };
    let severity_factor = match first("signature_severity").as_deref() {
        Some("critical") => 1.5,
        Some("major") => 1.2,
        Some("minor") => 0.8,
        Some("informational") => 0.5,
        _ => 1.0,
    };
    let confidence_factor = match first("confidence").as_deref() {
        Some("high") => 1.2,
        Some("low") => 0.7,
        _ => 1.0,
    };
    (!tactics.is_empty() || severity_factor != 1.0 || confidence_factor != 1.0).then_some(RuleMeta { tactics, severity_factor, confidence_factor })
}

impl StageMap {
    pub fn new(words: Vec<(String, Stage)>, families: Vec<(String, Stage)>, categories: Vec<(String, Stage)>) -> Self {
        Self::with_tactics(words, families, categories, Vec::new())
    }

    pub fn with_tactics(
        mut words: Vec<(String, Stage)>,
        mut families: Vec<(String, Stage)>,
        mut categories: Vec<(String, Stage)>,
        mut tactics: Vec<(String, Stage)>,
    ) -> Self {
        for (t, _) in tactics.iter_mut() {
            *t = t.to_ascii_uppercase();
        }
        for (w, _) in words.iter_mut().chain(categories.iter_mut()) {
            *w = w.to_ascii_lowercase();
        }
        families.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        words.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        Self { words, families, categories, tactics }
    }

    /// The stage from rule metadata first (the latest kill-chain stage among its tactics),
    /// then as [`StageMap::stage`].
    pub fn stage_with(&self, signature: &str, category: &str, meta: Option<&RuleMeta>) -> (Stage, &'static str) {
        let by_tactic = meta
            .into_iter()
            .flat_map(|m| m.tactics.iter())
            .filter_map(|t| self.tactics.iter().find(|(id, _)| id.eq_ignore_ascii_case(t)).map(|(_, s)| *s))
            .max_by_key(|s| s.rank());
        match by_tactic {
            Some(s) => (s, "metadata"),
            None => self.stage(signature, category),
        }
    }

    /// The stage and what decided it.
    pub fn stage(&self, signature: &str, category: &str) -> (Stage, &'static str) {
        // The family's words are not evidence of their own ("ET SCAN" names a family, and
        // "SCAN" in it is not a word of the rule's description).
        let family = self.families.iter().find(|(f, _)| starts_with_word(signature, f));
        let rest = family.map_or(signature, |(f, _)| &signature[f.len()..]);
        if let Some(s) = self.by_words(rest) {
            return (s, "words");
        }
        if let Some((_, s)) = family {
            return (*s, "name");
        }
        let cat = category.trim().to_ascii_lowercase();
        if let Some((_, s)) = self.categories.iter().find(|(c, _)| *c == cat) {
            return (*s, "category");
        }
        (Stage::Neutral, "default")
    }

    fn by_words(&self, text: &str) -> Option<Stage> {
        // The most specific stage wins when words of several stages appear (a "CnC
        // checkin after exploit" is C2): the later kill-chain stage.
        let mut best: Option<Stage> = None;
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')).filter(|w| !w.is_empty()) {
            let lw = word.to_ascii_lowercase();
            for (w, s) in &self.words {
                let hit = if w.ends_with('-') { lw.starts_with(w.as_str()) && lw.len() > w.len() } else { lw == *w };
                if hit && s.is_attack() && best.is_none_or(|b| *s > b) {
                    best = Some(*s);
                }
            }
        }
        best
    }
}

fn starts_with_word(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len()
        && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
        && s[prefix.len()..].chars().next().is_none_or(|c| !c.is_ascii_alphanumeric() && c != '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> StageMap {
        let st = |v: &[(&str, Stage)]| v.iter().map(|(a, b)| (a.to_string(), *b)).collect::<Vec<_>>();
        StageMap::new(
            st(&[("cnc", Stage::C2), ("beacon", Stage::C2), ("cve-", Stage::Exploit), ("exe", Stage::Delivery), ("bruteforce", Stage::Exploit)]),
            st(&[("ET SCAN", Stage::Recon), ("ET EXPLOIT", Stage::Exploit), ("ET POLICY", Stage::Policy), ("ET", Stage::Neutral), ("SURICATA", Stage::Noise)]),
            st(&[("Attempted Information Leak", Stage::Recon), ("A Network Trojan was detected", Stage::C2)]),
        )
    }

    #[test]
    fn words_then_family_then_category() {
        let m = map();
        assert_eq!(m.stage("ET HUNTING Possible Bot CnC Beacon (GET)", "Potentially Bad Traffic"), (Stage::C2, "words"));
        assert_eq!(m.stage("ET POLICY PE EXE or DLL Windows file download HTTP", ""), (Stage::Delivery, "words"));
        assert_eq!(m.stage("ET POLICY curl User-Agent Outbound", "Attempted Information Leak"), (Stage::Policy, "name"));
        assert_eq!(m.stage("ET SCAN Potential SSH Scan", ""), (Stage::Recon, "name"), "the family's own word is not evidence");
        assert_eq!(m.stage("ET SCAN LibSSH Based Frequent SSH Connections Likely BruteForce Attack", ""), (Stage::Exploit, "words"));
        assert_eq!(m.stage("ET WEB_SERVER Possible CVE-2014-6271 Attempt in Headers", ""), (Stage::Exploit, "words"));
        assert_eq!(m.stage("Local rule 7", "A Network Trojan was detected"), (Stage::C2, "category"));
        assert_eq!(m.stage("Local rule 7", "a network trojan was DETECTED "), (Stage::C2, "category"), "categories ignore case and spaces");
        assert_eq!(m.stage("SURICATA STREAM Packet with invalid timestamp", "Generic Protocol Command Decode"), (Stage::Noise, "name"));
    }

    #[test]
    fn metadata_tactics_come_first_and_severity_and_confidence_are_read() {
        let mut m = map();
        m.tactics = vec![("TA0011".into(), Stage::C2), ("TA0001".into(), Stage::Exploit)];
        let raw = r#"{"event_type":"alert","alert":{"signature":"ET INFO Something","category":"Misc activity","metadata":{"mitre_tactic_id":["TA0011"],"signature_severity":["Major"],"confidence":["Low"]}},"metadata":{"flowbits":["x"]}}"#;
        let meta = rule_meta(raw).expect("metadata");
        assert_eq!((meta.severity_factor, meta.confidence_factor), (1.2, 0.7));
        assert_eq!(m.stage_with("ET INFO Something", "Misc activity", Some(&meta)), (Stage::C2, "metadata"));
        // Near misses: the top-level metadata (flowbits) is not the rule's; an unknown
        // tactic falls back to the name.
        assert_eq!(rule_meta(r#"{"alert":{"signature":"x"},"metadata":{"flowbits":["a"]}}"#), None);
        let other = RuleMeta { tactics: vec!["TA9999".into()], severity_factor: 1.0, confidence_factor: 1.0 };
        assert_eq!(m.stage_with("ET SCAN Potential SSH Scan", "", Some(&other)), (Stage::Recon, "name"));
    }

    #[test]
    fn near_misses_stay_neutral() {
        let m = map();
        // "exe" only as a whole word; "CVE-" needs something after it; a family needs a
        // word boundary.
        assert_eq!(m.stage("Local executes nothing", ""), (Stage::Neutral, "default"));
        assert_eq!(m.stage("Local cve- mention", ""), (Stage::Neutral, "default"));
        assert_eq!(m.stage("ETSCAN lookalike", ""), (Stage::Neutral, "default"));
        assert_eq!(m.stage("ET SCANNER thing", ""), (Stage::Neutral, "name"), "ET SCANNER is family ET, not ET SCAN");
    }
}
