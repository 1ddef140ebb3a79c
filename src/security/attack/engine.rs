//! The compiled rule set: one Aho-Corasick automaton over every rule's trigger literals (ASCII
//! case-insensitive) as a prefilter, and each rule's regex, run only on values where all of the
//! rule's trigger groups fired. A value with no trigger costs one automaton pass and no
//! allocation.

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use regex::Regex;

use super::decode::{Normalized, fold_case_into};
use super::rules::{Check, Rule};

/// Most rules the engine holds (group masks live in a fixed array on the stack).
const MAX_RULES: usize = 128;

struct Compiled {
    rule: &'static Rule,
    regex: Option<Regex>,
    /// One bit per trigger group: the rule runs when all of them are set.
    full: u8,
}

pub(crate) struct Engine {
    prefilter: AhoCorasick,
    /// For each trigger literal: the (rule index, group bit) pairs it satisfies.
    satisfies: Vec<Vec<(u8, u8)>>,
    rules: Vec<Compiled>,
    null_byte_rules: Vec<usize>,
}

impl Engine {
    /// Compiles the given rules. An `Err` means a rule in the table is broken (a bug, never a
    /// configuration problem).
    pub(crate) fn new(rules: impl IntoIterator<Item = &'static Rule>) -> Result<Engine, String> {
        let mut literals: Vec<String> = Vec::new();
        let mut satisfies: Vec<Vec<(u8, u8)>> = Vec::new();
        let mut compiled = Vec::new();
        let mut null_byte_rules = Vec::new();
        for rule in rules {
            let index = compiled.len();
            if index >= MAX_RULES || rule.triggers.len() > 8 {
                return Err(format!(
                    "rule {}: too many rules or trigger groups",
                    rule.id
                ));
            }
            for (g, group) in rule.triggers.iter().enumerate() {
                for lit in *group {
                    let lit = lit.to_ascii_lowercase();
                    let id = match literals.iter().position(|l| *l == lit) {
                        Some(id) => id,
                        None => {
                            literals.push(lit);
                            satisfies.push(Vec::new());
                            literals.len() - 1
                        }
                    };
                    satisfies[id].push((index as u8, 1 << g));
                }
            }
            let regex = match &rule.check {
                Check::Regex(re) | Check::Unfolded(re) | Check::Scored(re, _) => Some(
                    Regex::new(&ascii_classes(re))
                        .map_err(|e| format!("rule {}: bad regex: {e}", rule.id))?,
                ),
                Check::NullByte => {
                    null_byte_rules.push(index);
                    None
                }
            };
            if regex.is_some() && rule.triggers.is_empty() {
                return Err(format!("rule {}: a regex rule needs triggers", rule.id));
            }
            compiled.push(Compiled {
                rule,
                regex,
                full: ((1u16 << rule.triggers.len()) - 1) as u8,
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
            satisfies,
            rules: compiled,
            null_byte_rules,
        })
    }

    /// Runs the rules that apply to `scope` over one normalized value; calls `hit` with each
    /// rule that fired and its score.
    /// `scratch` is reused for the lowercased text, so a caller scanning many values allocates
    /// it once.
    pub(crate) fn scan(
        &self,
        value: &Normalized<'_>,
        scope: u8,
        scratch: &mut String,
        mut hit: impl FnMut(&'static Rule, u32),
    ) {
        let text: &str = &value.text;
        if value.null_byte {
            for &i in &self.null_byte_rules {
                let rule = self.rules[i].rule;
                if rule.scopes & scope != 0 {
                    hit(rule, rule.score);
                }
            }
        }
        let mut groups = [0u8; MAX_RULES];
        let mut any = false;
        for m in self.prefilter.find_overlapping_iter(text) {
            for &(rule, bit) in &self.satisfies[m.pattern().as_usize()] {
                groups[usize::from(rule)] |= bit;
                any = true;
            }
        }
        if !any {
            return;
        }
        let mut folded = false;
        for (c, &seen) in self.rules.iter().zip(&groups) {
            if seen != c.full || seen == 0 || c.rule.scopes & scope == 0 {
                continue;
            }
            let Some(re) = &c.regex else { continue };
            if let Check::Unfolded(_) = c.rule.check {
                if re.is_match(text) {
                    hit(c.rule, c.rule.score);
                }
                continue;
            }
            if !folded {
                fold_case_into(text, scratch);
                folded = true;
            }
            let lower: &str = scratch;
            let score = match &c.rule.check {
                Check::Scored(_, score) => score(re, lower, scope),
                _ if re.is_match(lower) => c.rule.score,
                _ => 0,
            };
            if score > 0 {
                hit(c.rule, score);
            }
        }
    }
}

/// Rewrites the Perl classes of a rule's pattern to their ASCII forms (`\w` → `[0-9A-Za-z_]`,
/// `\b` → `(?-u:\b)`, …). Signatures are ASCII; Unicode classes inside counted repetitions made
/// the compiled rules weigh tens of megabytes.
fn ascii_classes(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() * 2);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('w') => out.push_str("[0-9A-Za-z_]"),
            Some('W') => out.push_str("[^0-9A-Za-z_]"),
            Some('d') => out.push_str("[0-9]"),
            Some('D') => out.push_str("[^0-9]"),
            Some('s') => out.push_str("[\\t\\n\\x0B\\f\\r ]"),
            Some('S') => out.push_str("[^\\t\\n\\x0B\\f\\r ]"),
            Some('b') => out.push_str("(?-u:\\b)"),
            Some('B') => out.push_str("(?-u:\\B)"),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::decode::normalize;
    use super::super::rules::{RULES, scope};
    use super::*;

    fn hits(text: &str, sc: u8) -> Vec<(&'static str, u32)> {
        let engine = Engine::new(RULES.iter()).expect("rules compile");
        let mut out = Vec::new();
        let mut scratch = String::new();
        engine.scan(&normalize(text, 3), sc, &mut scratch, |r, s| {
            out.push((r.id, s))
        });
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
        assert_eq!(score("/files/..", scope::PATH), 10);
        assert_eq!(score("/a/..;/b", scope::PATH), 10);
        assert_eq!(score("/files/v1../x", scope::PATH), 4);
        assert_eq!(score("../../x", scope::QUERY), 10);
        assert_eq!(score("../x", scope::QUERY), 5);
        assert_eq!(score("import a from '../../../b'", scope::BODY), 6);
        assert_eq!(score("see ../docs", scope::BODY), 3);
        assert_eq!(score("report..final.pdf", scope::QUERY), 0);
    }
}
