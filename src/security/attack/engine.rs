//! The compiled rule set: one Aho-Corasick automaton over every rule's trigger literals (ASCII
//! case-insensitive) as a prefilter, and each rule's regex, run only on values where all of the
//! rule's trigger groups fired. A value with no trigger costs one automaton pass and no
//! allocation.

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use regex::Regex;

use super::decode::{Normalized, fold_case};
use super::rules::{Check, Rule};

/// Bit words for the set of literals seen in a value (512 distinct literals at most).
const WORDS: usize = 8;
type Bits = [u64; WORDS];

struct Compiled {
    rule: &'static Rule,
    regex: Option<Regex>,
    /// One mask per trigger group: the rule runs when every mask meets the fired literals.
    groups: Vec<Bits>,
}

pub(crate) struct Engine {
    prefilter: AhoCorasick,
    rules: Vec<Compiled>,
}

impl Engine {
    /// Compiles the given rules. An `Err` means a rule in the table is broken (a bug, never a
    /// configuration problem).
    pub(crate) fn new(rules: impl IntoIterator<Item = &'static Rule>) -> Result<Engine, String> {
        let mut literals: Vec<String> = Vec::new();
        let mut compiled = Vec::new();
        for rule in rules {
            let mut groups = Vec::new();
            for group in rule.triggers {
                let mut mask: Bits = [0; WORDS];
                for lit in *group {
                    let lit = lit.to_ascii_lowercase();
                    let id = match literals.iter().position(|l| *l == lit) {
                        Some(id) => id,
                        None => {
                            literals.push(lit);
                            literals.len() - 1
                        }
                    };
                    if id >= WORDS * 64 {
                        return Err("too many trigger literals".to_string());
                    }
                    mask[id / 64] |= 1 << (id % 64);
                }
                groups.push(mask);
            }
            let regex = match &rule.check {
                Check::Regex(re) | Check::Scored(re, _) => {
                    Some(Regex::new(re).map_err(|e| format!("rule {}: bad regex: {e}", rule.id))?)
                }
                Check::NullByte => None,
            };
            compiled.push(Compiled {
                rule,
                regex,
                groups,
            });
        }
        let prefilter = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .kind(Some(AhoCorasickKind::DFA))
            .build(&literals)
            .map_err(|e| format!("trigger automaton: {e}"))?;
        Ok(Engine {
            prefilter,
            rules: compiled,
        })
    }

    /// Runs the rules that apply to `scope` over one normalized value; calls `hit` with each
    /// rule that fired and its score.
    pub(crate) fn scan(
        &self,
        value: &Normalized<'_>,
        scope: u8,
        mut hit: impl FnMut(&'static Rule, u32),
    ) {
        let text: &str = &value.text;
        let mut fired: Bits = [0; WORDS];
        let mut any = false;
        for m in self.prefilter.find_overlapping_iter(text) {
            let id = m.pattern().as_usize();
            fired[id / 64] |= 1 << (id % 64);
            any = true;
        }
        if !any && !value.null_byte {
            return;
        }
        let mut lower = None;
        for c in &self.rules {
            if c.rule.scopes & scope == 0 {
                continue;
            }
            let score = match (&c.rule.check, &c.regex) {
                (Check::NullByte, _) => {
                    if value.null_byte {
                        c.rule.score
                    } else {
                        0
                    }
                }
                (check, Some(re)) => {
                    if !any || !c.groups.iter().all(|g| intersects(g, &fired)) {
                        continue;
                    }
                    let lower: &str = lower.get_or_insert_with(|| fold_case(text));
                    match check {
                        Check::Scored(_, score) => score(re, lower, scope),
                        _ if re.is_match(lower) => c.rule.score,
                        _ => 0,
                    }
                }
                (_, None) => 0,
            };
            if score > 0 {
                hit(c.rule, score);
            }
        }
    }
}

fn intersects(a: &Bits, b: &Bits) -> bool {
    a.iter().zip(b).any(|(x, y)| x & y != 0)
}

#[cfg(test)]
mod tests {
    use super::super::decode::normalize;
    use super::super::rules::{RULES, scope};
    use super::*;

    fn hits(text: &str, sc: u8) -> Vec<(&'static str, u32)> {
        let engine = Engine::new(RULES.iter()).expect("rules compile");
        let mut out = Vec::new();
        engine.scan(&normalize(text, 3), sc, |r, s| out.push((r.id, s)));
        out
    }

    #[test]
    fn every_rule_compiles_and_ids_are_unique() {
        Engine::new(RULES.iter()).expect("rules compile");
        let mut ids: Vec<_> = RULES.iter().map(|r| r.id).collect();
        ids.sort_unstable();
        let before = ids.len();
        ids.dedup();
        assert_eq!(before, ids.len());
    }

    #[test]
    fn no_trigger_no_hit() {
        assert!(hits("/api/items/42", scope::PATH).is_empty());
        assert!(hits("hello world", scope::QUERY).is_empty());
    }

    #[test]
    fn triggers_are_case_insensitive() {
        let h = hits("1 UNION SELECT password FROM users", scope::QUERY);
        assert!(h.iter().any(|(id, _)| *id == "sqli-union-select"), "{h:?}");
    }

    #[test]
    fn rules_respect_scope() {
        assert!(
            hits("sqlmap/1.7", scope::HEADER)
                .iter()
                .any(|(id, _)| *id == "scanner-user-agent")
        );
        assert!(hits("sqlmap/1.7", scope::BODY).is_empty());
    }

    #[test]
    fn dot_dot_scores_by_shape() {
        let score = |t: &str, sc: u8| {
            hits(t, sc)
                .into_iter()
                .find(|(id, _)| *id == "traversal-dot-dot")
                .map_or(0, |(_, s)| s)
        };
        assert_eq!(score("/files/../x", scope::PATH), 10);
        assert_eq!(score("../../x", scope::QUERY), 10);
        assert_eq!(score("../x", scope::QUERY), 5);
        assert_eq!(score("import a from '../../../b'", scope::BODY), 6);
        assert_eq!(score("see ../docs", scope::BODY), 3);
        assert_eq!(score("report..final.pdf", scope::QUERY), 0);
    }
}
