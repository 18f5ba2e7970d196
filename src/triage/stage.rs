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
}

impl StageMap {
    pub fn new(mut words: Vec<(String, Stage)>, mut families: Vec<(String, Stage)>, mut categories: Vec<(String, Stage)>) -> Self {
        for (w, _) in words.iter_mut().chain(categories.iter_mut()) {
            *w = w.to_ascii_lowercase();
        }
        families.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        words.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        Self { words, families, categories }
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
