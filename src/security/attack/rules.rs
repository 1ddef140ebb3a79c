//! The rule table: for each rule its id, category, score, the locations it applies to, the
//! literal triggers that must appear (case-insensitively) before its regex runs, and the regex
//! itself, written against normalized, lowercased text. A few rules compute their score from the
//! shape of the match (see the `score_*` functions).

use regex::Regex;

use super::Category;

/// Where a value came from, as a bit so that a rule can be limited to some locations.
pub(crate) mod scope {
    pub const PATH: u8 = 1;
    pub const QUERY: u8 = 2;
    /// User agent and other non-standard headers.
    pub const HEADER: u8 = 4;
    /// `referer` and `origin`: URLs the client chose, not a client self-description.
    pub const REFERER: u8 = 8;
    pub const COOKIE: u8 = 16;
    pub const BODY: u8 = 32;
    pub const ALL: u8 = PATH | QUERY | HEADER | REFERER | COOKIE | BODY;
}

/// How a rule decides, once its triggers fired.
pub(crate) enum Check {
    /// Fires with the rule's score when the regex matches.
    Regex(&'static str),
    /// Like `Regex`, but run on the text before case folding (the regex must be
    /// case-insensitive itself): for cheap anchored checks that often trigger, so that they do
    /// not pay for a lowercase copy.
    Unfolded(&'static str),
    /// The function gets the compiled regex, the text and the scope, and returns the score
    /// (0 = no match).
    Scored(&'static str, fn(&Regex, &str, u8) -> u32),
    /// Fires when the value held a NUL byte (found by decoding, not by a regex).
    NullByte,
}

pub(crate) struct Rule {
    pub id: &'static str,
    pub category: Category,
    /// The score when it fires (the highest one for `Check::Scored`).
    pub score: u32,
    pub scopes: u8,
    /// Groups of literals: the regex runs only when every group has one literal in the text.
    pub triggers: &'static [&'static [&'static str]],
    pub check: Check,
}

use Category::{CommandInjection as Cmdi, Scanner, Sqli, Traversal, Xss};
use scope::ALL;

const QUOTES: &[&str] = &["'", "\"", "`"];
const BOOL_OPS: &[&str] = &["or", "and", "||", "&&"];
const SEPARATORS: &[&str] = &[";", "|", "&", "\n"];
/// Unambiguous command names: after a shell separator they are a command.
const STRONG_COMMANDS: &[&str] = &[
    "whoami",
    "uname",
    "wget",
    "curl",
    "bash",
    "zsh",
    "ksh",
    "python",
    "perl",
    "ruby",
    "nslookup",
    "busybox",
    "socat",
    "telnet",
    "tftp",
    "mkfifo",
    "ifconfig",
    "ipconfig",
    "netstat",
    "systeminfo",
    "powershell",
    "pwsh",
    "cmd",
    "certutil",
    "bitsadmin",
    "wmic",
    "printenv",
    "nohup",
    "xterm",
    "crontab",
    "tasklist",
    "netcat",
    "ncat",
    "chmod",
    "chown",
    "base64",
    "nmap",
    "useradd",
];
/// Command names that are also English words: they need an argument that looks like a
/// command's (an option, a path, a variable, nothing) to count.
const WORD_COMMANDS: &[&str] = &[
    "cat", "ls", "id", "rm", "ps", "sh", "dash", "nc", "echo", "env", "kill", "dir", "type", "su",
    "sudo", "php", "find", "head", "tail", "touch", "cp", "mv", "awk", "sed", "export", "more",
    "less", "ln", "mkdir", "tar", "gcc", "exec", "eval", "source", "set", "net", "sleep", "ping",
    "timeout",
];

pub(crate) static RULES: &[Rule] = &[
    // ------------------------------------------------------------------ SQL injection
    Rule {
        id: "sqli-tautology",
        category: Sqli,
        score: 10,
        scopes: ALL,
        triggers: &[QUOTES, BOOL_OPS],
        check: Check::Regex(
            r#"['")`][\s)]*(?:\bor\b|\band\b|\bxor\b|\|\||&&)[\s(]*(?:not\s+)?(?:'[^']{0,30}'|"[^"]{0,30}"|[\w.@$]+)\s*(?:=|<>|!=|<=?|>=?|\blike\s*['"]|\b(?:rlike|regexp)\b|\bbetween\s+\S+\s+and\b)"#,
        ),
    },
    Rule {
        id: "sqli-bool-literal",
        category: Sqli,
        score: 10,
        scopes: ALL,
        triggers: &[QUOTES, &["true", "false"]],
        check: Check::Regex(
            r#"['")][\s)]*(?:\bor\b|\band\b|\|\||&&)\s*(?:not\s+)?(?:true|false)\b"#,
        ),
    },
    Rule {
        id: "sqli-or-tautology",
        category: Sqli,
        score: 10,
        scopes: ALL,
        triggers: &[&["or", "||"], &["="]],
        check: Check::Scored(
            r#"(?:\bor\b|\|\|)[\s(]*['"]?([\w.]{1,20})['"]?[\s)]*=[\s(]*['"]?([\w.]{1,20})"#,
            score_equal_operands,
        ),
    },
    Rule {
        id: "sqli-and-tautology",
        category: Sqli,
        score: 6,
        scopes: ALL,
        triggers: &[&["and", "&&"], &["="]],
        check: Check::Scored(
            r#"(?:\band\b|&&)[\s(]*['"]?([\w.]{1,20})['"]?[\s)]*=[\s(]*['"]?([\w.]{1,20})"#,
            score_equal_operands_and,
        ),
    },
    Rule {
        id: "sqli-quoted-compare",
        category: Sqli,
        score: 5,
        scopes: ALL,
        triggers: &[&["'", "\""], &["="]],
        check: Check::Regex(r#"(?:^|[\s(])['"]\w{0,20}['"]\s*=\s*['"]\w{0,20}"#),
    },
    Rule {
        id: "sqli-union-select",
        category: Sqli,
        score: 10,
        scopes: ALL,
        triggers: &[&["union"], &["select"]],
        check: Check::Regex(r"\bunion(?:\s+(?:all|distinct))?[\s(]+select\b"),
    },
    Rule {
        id: "sqli-select-from",
        category: Sqli,
        score: 3,
        scopes: ALL,
        triggers: &[&["select"], &["from"]],
        check: Check::Regex(r"\bselect\b.{0,120}?\bfrom\b"),
    },
    Rule {
        id: "sqli-subselect",
        category: Sqli,
        score: 8,
        scopes: ALL,
        triggers: &[&["select"]],
        check: Check::Regex(r"\(\s*select\b(?:[^)]*\bfrom\b|\s*\(|\s+\d|\s+\w+\s*\()"),
    },
    Rule {
        id: "sqli-stacked-query",
        category: Sqli,
        score: 10,
        scopes: ALL,
        triggers: &[
            &[";"],
            &[
                "drop", "truncate", "alter", "create", "insert", "update", "delete", "shutdown",
                "exec", "declare", "select", "waitfor", "copy",
            ],
        ],
        check: Check::Regex(
            r";\s*(?:drop\s+(?:table|database|schema)\b|truncate\s+(?:table\s+)?\w|alter\s+(?:table|user)\b|create\s+(?:table|user|function)\b|insert\s+into\b|update\s+\w+\s+set\b|delete\s+from\b|shutdown\b|exec(?:ute)?\s+\w|declare\s+@|select\s+(?:\*|\d|@@|(?:pg_)?sleep|[\w,\s]{1,60}\bfrom\b)|waitfor\s+delay|copy\s*\()",
        ),
    },
    Rule {
        id: "sqli-comment-after-quote",
        category: Sqli,
        score: 8,
        scopes: ALL,
        triggers: &[&["'", "\"", "`"], &["--", "#", "/*"]],
        check: Check::Regex(r#"['"`][\s)]*(?:--(?:[\s\-+]*$|\s*[-+;])|#(?:\s|$)|/\*)"#),
    },
    Rule {
        id: "sqli-order-by-probe",
        category: Sqli,
        score: 10,
        scopes: ALL,
        triggers: &[QUOTES, &["order", "group"]],
        check: Check::Regex(r#"['")]\s*(?:order|group)\s+by\s+[\w,]+\s*(?:--|#|$)"#),
    },
    Rule {
        id: "sqli-having",
        category: Sqli,
        score: 10,
        scopes: ALL,
        triggers: &[&["having"]],
        check: Check::Regex(r"\bhaving\s+\d+\s*=\s*\d+"),
    },
    Rule {
        id: "sqli-time-based",
        category: Sqli,
        score: 10,
        scopes: ALL,
        triggers: &[&["sleep", "benchmark", "waitfor", "dbms_lock", "randomblob"]],
        check: Check::Regex(
            r"(?:^|[^\w.])(?:pg_)?sleep\s*\(\s*\d+(?:\.\d+)?\s*\)|\bbenchmark\s*\(\s*\d+\s*,|\bwaitfor\s+(?:delay|time)\s*'|dbms_lock\.sleep\s*\(|\brandomblob\s*\(\s*\d{6,}",
        ),
    },
    Rule {
        id: "sqli-system-tables",
        category: Sqli,
        score: 8,
        scopes: ALL,
        triggers: &[&[
            "information_schema",
            "sysobjects",
            "syscolumns",
            "sqlite_master",
            "all_tables",
            "pg_catalog",
            "pg_shadow",
            "mysql.user",
            "v$version",
            "msysobjects",
            "all_tab_columns",
            "user_tables",
        ]],
        check: Check::Regex(
            r"\binformation_schema\b|\b(?:sysobjects|syscolumns|sqlite_master|all_tables|pg_catalog|pg_shadow|msysobjects|all_tab_columns|user_tables)\b|\bmysql\.user\b|\bv\$version\b",
        ),
    },
    Rule {
        id: "sqli-mssql-procedures",
        category: Sqli,
        score: 10,
        scopes: ALL,
        triggers: &[&[
            "xp_cmdshell",
            "xp_dirtree",
            "sp_configure",
            "sp_oacreate",
            "xp_regread",
            "sp_executesql",
            "sp_makewebtask",
            "xp_fileexist",
            "openrowset",
            "opendatasource",
        ]],
        check: Check::Regex(
            r"\b(?:xp_cmdshell|xp_dirtree|sp_configure|sp_oacreate|xp_regread|sp_executesql|sp_makewebtask|xp_fileexist|openrowset|opendatasource)\b",
        ),
    },
    Rule {
        id: "sqli-file-access",
        category: Sqli,
        score: 10,
        scopes: ALL,
        triggers: &[&[
            "load_file",
            "outfile",
            "dumpfile",
            "utl_file",
            "utl_http",
            "program",
        ]],
        check: Check::Regex(
            r"\bload_file\s*\(|\binto\s+(?:out|dump)file\b|\butl_(?:file|http)\b|\bto\s+program\s+'",
        ),
    },
    Rule {
        id: "sqli-error-based",
        category: Sqli,
        score: 10,
        scopes: ALL,
        triggers: &[&[
            "extractvalue",
            "updatexml",
            "rand",
            "exp",
            "gtid_subset",
            "convert",
        ]],
        check: Check::Regex(
            r"\b(?:extractvalue|updatexml)\s*\(|\bfloor\s*\(\s*rand\s*\(|\bexp\s*\(\s*~|\bgtid_subset\s*\(|\bconvert\s*\(\s*int\s*,\s*\(?\s*select\b",
        ),
    },
    Rule {
        id: "sqli-blind-function",
        category: Sqli,
        score: 10,
        scopes: ALL,
        triggers: &[
            &["select"],
            &[
                "ascii", "ord", "substr", "mid", "length", "char", "hex", "count",
            ],
        ],
        check: Check::Regex(
            r"\b(?:ascii|ord|substr|substring|mid|length|char|hex|unhex|count)\s*\(\s*\(\s*select\b",
        ),
    },
    Rule {
        id: "sqli-exists-select",
        category: Sqli,
        score: 8,
        scopes: ALL,
        triggers: &[&["exists"], &["select"]],
        check: Check::Regex(r"\bexists\s*\(\s*select\b"),
    },
    Rule {
        id: "sqli-rlike-select",
        category: Sqli,
        score: 10,
        scopes: ALL,
        triggers: &[&["rlike", "regexp"], &["select"]],
        check: Check::Regex(r"\b(?:rlike|regexp)\s*\(\s*select\b"),
    },
    Rule {
        id: "sqli-fingerprint-functions",
        category: Sqli,
        score: 5,
        scopes: ALL,
        triggers: &[&[
            "@@",
            "version",
            "database",
            "user",
            "schema",
            "sqlite_version",
        ]],
        check: Check::Regex(
            r"@@(?:version|datadir|hostname|basedir|servername)\b|\b(?:version|database|user|schema|current_user|sqlite_version|session_user|system_user)\s*\(\s*\)",
        ),
    },
    Rule {
        id: "sqli-string-building",
        category: Sqli,
        score: 5,
        scopes: ALL,
        triggers: &[&["char", "chr", "concat"]],
        check: Check::Regex(
            r"\bchar\s*\(\s*\d+(?:\s*,\s*\d+)+\s*\)|\b(?:group_)?concat(?:_ws)?\s*\(|\bchr\s*\(\s*\d+\s*\)\s*(?:\|\||\+)",
        ),
    },
    Rule {
        id: "sqli-concat-select",
        category: Sqli,
        score: 10,
        scopes: ALL,
        triggers: &[&["'", "\""], &["||", "+"]],
        check: Check::Regex(
            r#"['"]\s*(?:\|\||\+)\s*\(\s*select\b|'\s*\|\|\s*'[^']{0,10}'\s*\|\||['"]\s*\|\|\s*(?:pg_)?sleep\b"#,
        ),
    },
    Rule {
        id: "sqli-procedure-analyse",
        category: Sqli,
        score: 10,
        scopes: ALL,
        triggers: &[&["procedure"]],
        check: Check::Regex(r"\bprocedure\s+analyse\s*\("),
    },
    Rule {
        id: "sqli-case-when",
        category: Sqli,
        score: 4,
        scopes: ALL,
        triggers: &[&["case"], &["when"]],
        check: Check::Regex(r"\bcase\s+when\b.{1,80}\bthen\b"),
    },
    Rule {
        id: "sqli-quote",
        category: Sqli,
        score: 2,
        scopes: ALL,
        triggers: &[&["'"]],
        check: Check::Regex(r"'"),
    },
    Rule {
        id: "sqli-keyword",
        category: Sqli,
        score: 2,
        scopes: ALL,
        triggers: &[&[
            "select", "union", "insert", "drop", "exec", "declare", "truncate", "having",
            "waitfor", "delete", "update",
        ]],
        check: Check::Regex(
            r"\b(?:select|union|insert|drop|exec|execute|declare|truncate|having|waitfor|delete|update)\b",
        ),
    },
    Rule {
        id: "sqli-trailing-comment",
        category: Sqli,
        score: 3,
        scopes: ALL,
        triggers: &[&["--", "#"]],
        check: Check::Regex(r"(?:\s|^|\w|\))(?:--[\s\-+]*|#)$"),
    },
    // ------------------------------------------------------------------ XSS
    Rule {
        id: "xss-script-tag",
        category: Xss,
        score: 10,
        scopes: ALL,
        triggers: &[&["<"], &["script"]],
        check: Check::Regex(r"<\s*/?\s*script\b"),
    },
    Rule {
        id: "xss-event-handler",
        category: Xss,
        score: 10,
        scopes: ALL,
        triggers: &[&["<"], &["on"]],
        check: Check::Regex(r#"<[a-z!/][^>]*?[\s/"'`;]on[a-z]{3,}\s*="#),
    },
    Rule {
        id: "xss-attribute-breakout",
        category: Xss,
        score: 8,
        scopes: ALL,
        triggers: &[&["'", "\""], &["on"]],
        check: Check::Regex(r#"['"]\s*(?:[a-z]+\s+){0,2}on[a-z]{3,}\s*="#),
    },
    Rule {
        id: "xss-script-uri",
        category: Xss,
        score: 10,
        scopes: ALL,
        // Any single split of "javascript" by whitespace keeps "java" or "cript" whole.
        triggers: &[&[":"], &["java", "cript"]],
        check: Check::Regex(
            r#"(?:^|[\s"'=(<,;:`])(?:j\s*a\s*v\s*a|v\s*b|l\s*i\s*v\s*e)\s*s\s*c\s*r\s*i\s*p\s*t\s*:\s*(?:[\w$.\[\]]+\s*[(`=]|/[/*]|\{|void\b|%)"#,
        ),
    },
    Rule {
        id: "xss-data-uri",
        category: Xss,
        score: 10,
        scopes: ALL,
        triggers: &[&["data"], &["html", "javascript", "xml"]],
        check: Check::Regex(
            r"\bdata\s*:\s*(?:text/html|text/javascript|application/(?:x-)?javascript|text/xml|application/xhtml)",
        ),
    },
    Rule {
        id: "xss-embedding-tag",
        category: Xss,
        score: 8,
        scopes: ALL,
        triggers: &[
            &["<"],
            &["frame", "object", "embed", "applet", "base", "isindex"],
        ],
        check: Check::Regex(r"<\s*(?:i?frame|frameset|object|embed|applet|base|isindex)\b"),
    },
    Rule {
        id: "xss-meta-refresh",
        category: Xss,
        score: 10,
        scopes: ALL,
        triggers: &[&["http-equiv"]],
        check: Check::Regex(r#"http-equiv\s*=\s*['"]?refresh"#),
    },
    Rule {
        id: "xss-tag-open",
        category: Xss,
        score: 3,
        scopes: ALL,
        triggers: &[&["<"]],
        check: Check::Regex(r"<\s*/?[a-z!%?]"),
    },
    Rule {
        id: "xss-dom-access",
        category: Xss,
        score: 6,
        scopes: ALL,
        triggers: &[&[
            "document",
            "window",
            "location",
            "localstorage",
            "sessionstorage",
            "innerhtml",
            "fromcharcode",
            "atob",
        ]],
        check: Check::Regex(
            r"\bdocument\s*\.\s*(?:cookie|domain|write|location)|\bwindow\s*\.\s*(?:location|open|name)\b|\blocation\s*\.\s*(?:href|hash|search|replace)\b|\b(?:local|session)storage\b|\.innerhtml\s*=|fromcharcode\s*\(|\batob\s*\(",
        ),
    },
    Rule {
        id: "xss-js-call",
        category: Xss,
        score: 4,
        scopes: ALL,
        triggers: &[&[
            "alert",
            "prompt",
            "confirm",
            "eval",
            "function",
            "settimeout",
            "setinterval",
        ]],
        check: Check::Regex(
            r#"\b(?:alert|prompt|confirm|eval)\s*[(`]|\bnew\s+function\s*\(|\bset(?:timeout|interval)\s*\(\s*['"]"#,
        ),
    },
    Rule {
        id: "xss-js-string-breakout",
        category: Xss,
        score: 10,
        scopes: ALL,
        triggers: &[&["'", "\""], &[";"]],
        check: Check::Regex(
            r#"['"]\s*\)?\s*;\s*(?:(?:alert|prompt|confirm|eval|fetch)\s*[(`]|(?:document|window)\s*\.)"#,
        ),
    },
    Rule {
        id: "xss-srcdoc-formaction",
        category: Xss,
        score: 8,
        scopes: ALL,
        triggers: &[&["srcdoc", "formaction", "xlink:href"]],
        check: Check::Regex(r"\b(?:srcdoc|formaction)\s*=|xlink:href\s*="),
    },
    Rule {
        id: "xss-template-injection",
        category: Xss,
        score: 10,
        scopes: ALL,
        triggers: &[&["constructor", "{{"]],
        check: Check::Regex(
            r"constructor\s*\.\s*constructor\s*\(|\{\{[^}]*\b(?:constructor|\$eval|\$on)\b",
        ),
    },
    // ------------------------------------------------------------------ path traversal
    Rule {
        id: "traversal-dot-dot",
        category: Traversal,
        score: 10,
        scopes: ALL,
        triggers: &[&[".."]],
        check: Check::Scored(r"\.{2,};?[/\\]|[/\\]\.\.$", score_dot_dot),
    },
    Rule {
        id: "traversal-sensitive-file",
        category: Traversal,
        score: 10,
        scopes: ALL,
        triggers: &[&[
            "etc",
            "proc",
            "boot.ini",
            "win.ini",
            "system.ini",
            "windows",
            "system32",
            "inetpub",
            "web-inf",
            "web.config",
            "id_rsa",
            "id_dsa",
            ".ssh",
            ".bash_history",
            ".aws",
            ".git",
            ".env",
            "wp-config",
            "database.yml",
            "var",
        ]],
        check: Check::Scored(
            r"(?:^|[/\\])etc[/\\]+(?:passwd|shadow|group|hosts|issue|hostname|motd|sudoers|crontab|fstab|resolv\.conf|nginx|apache2?|httpd|mysql|ssh)\b|(?:^|[/\\])proc[/\\]+(?:self|version|cmdline|\d+)\b|\bboot\.ini\b|\b(?:win|system)\.ini\b|windows[/\\]+(?:system32|win\.ini|repair)|\bsystem32[/\\]+(?:config|drivers)|\binetpub[/\\]|web-inf[/\\]+web\.xml|\bweb\.config\b|\.ssh[/\\]+(?:id_|authorized_keys)|\bid_[rd]sa\b|\.bash_history|\.aws[/\\]+credentials|\.git[/\\]+config|(?:^|[/\\])\.env$|wp-config\.php|config[/\\]+database\.yml|(?:^|[/\\])var[/\\]+log[/\\]",
            score_sensitive_file,
        ),
    },
    Rule {
        id: "traversal-stream-wrapper",
        category: Traversal,
        score: 10,
        scopes: ALL,
        triggers: &[&[
            "php://",
            "phar://",
            "zip://",
            "expect://",
            "glob://",
            "zlib://",
            "jar://",
            "gopher://",
            "dict://",
        ]],
        check: Check::Regex(r"\b(?:php|phar|zip|expect|glob|compress\.zlib|jar|gopher|dict)://"),
    },
    Rule {
        id: "traversal-file-uri",
        category: Traversal,
        score: 4,
        scopes: ALL,
        triggers: &[&["file:"]],
        check: Check::Regex(r"\bfile:/"),
    },
    Rule {
        id: "traversal-null-byte",
        category: Traversal,
        score: 10,
        scopes: ALL,
        triggers: &[],
        check: Check::NullByte,
    },
    // ------------------------------------------------------------------ command injection
    Rule {
        id: "cmdi-chained-command",
        category: Cmdi,
        score: 10,
        scopes: ALL,
        triggers: &[SEPARATORS, STRONG_COMMANDS],
        check: Check::Regex(
            r#"(?:[;|&\n])\s*(?:\{\s*)?(?:(?:/usr)?(?:/local)?/s?bin/)?(?:whoami|uname|wget|curl|bash|zsh|ksh|python[0-9.]*|perl|ruby|nslookup|busybox|socat|telnet|tftp|mkfifo|ifconfig|ipconfig|netstat|systeminfo|powershell|pwsh|cmd(?:\.exe)?|certutil|bitsadmin|wmic|printenv|nohup|xterm|crontab|tasklist|netcat|ncat|chmod|chown|base64|nmap|useradd)(?:[\s;|&)`'"<>]|$)"#,
        ),
    },
    Rule {
        id: "cmdi-chained-word-command",
        category: Cmdi,
        score: 10,
        scopes: ALL,
        triggers: &[SEPARATORS, WORD_COMMANDS],
        check: Check::Regex(
            r#"[;|&\n]\s*(?:\{\s*)?(?:(?:/usr)?(?:/local)?/s?bin/)?(?:(?:cat|ls|id|rm|ps|sh|dash|nc|echo|env|kill|dir|type|su|sudo|php|find|head|tail|touch|cp|mv|awk|sed|export|more|less|ln|mkdir|tar|gcc|exec|eval|source|set)(?:\s+(?:--?[a-z]|/|\\|~|\.{1,2}/|\$|[a-z]:[\\/]|'|")|\s*(?:$|[;|&`)#,\n]))|net\s+(?:user|localgroup|view|use|share)\b|(?:sleep|ping|timeout)\s+(?:-[a-z]+\s+)?\d)"#,
        ),
    },
    Rule {
        id: "cmdi-substitution",
        category: Cmdi,
        score: 10,
        scopes: ALL,
        triggers: &[&["`", "$("]],
        check: Check::Scored(
            r"(?:(?:^|[^`])`|\$\()\s*(?:(?:/usr)?/s?bin/)?(?:whoami|uname|wget|curl|bash|sh|zsh|python[0-9.]*|perl|nslookup|ping|sleep|cat|ls|id|echo|env|nc|ps|rm|dig|host|hostname|base64|printenv)\b",
            score_substitution,
        ),
    },
    Rule {
        id: "cmdi-ifs",
        category: Cmdi,
        score: 10,
        scopes: ALL,
        triggers: &[&["$ifs", "${ifs"]],
        check: Check::Regex(r"\$\{?ifs\b"),
    },
    Rule {
        id: "cmdi-shellshock",
        category: Cmdi,
        score: 10,
        scopes: ALL,
        triggers: &[&["()", "( )"], &["{"]],
        check: Check::Regex(r"\(\s*\)\s*\{[^}]{0,40};\s*\}\s*;"),
    },
    Rule {
        id: "cmdi-reverse-shell",
        category: Cmdi,
        score: 10,
        scopes: ALL,
        triggers: &[&[
            "/dev/tcp", "/dev/udp", "nc", "netcat", "socket", "pty", "0>&1", "<>",
        ]],
        check: Check::Regex(
            r"/dev/(?:tcp|udp)/|\b(?:nc|ncat|netcat)\b[^\n]{0,80}\s-[a-z]*e\s|\bsocket\.socket\s*\(|\bpty\.spawn\s*\(|0>&1|\bexec\s+\d+<>",
        ),
    },
    Rule {
        id: "cmdi-binary-path",
        category: Cmdi,
        score: 10,
        scopes: ALL,
        triggers: &[&["bin/", "sh -c"]],
        check: Check::Regex(
            r#"(?:^|[;|&`\n(])\s*/(?:usr/)?(?:local/)?s?bin/\S|/bin/(?:ba|z|k|da)?sh\s+-[a-z]*[ci]\b|\bsh\s+-c\s+['"]"#,
        ),
    },
    Rule {
        id: "cmdi-download-execute",
        category: Cmdi,
        score: 10,
        scopes: ALL,
        triggers: &[&["curl", "wget"]],
        check: Check::Regex(
            r"\b(?:curl|wget)\b[^\n|;]{0,200}\|\s*(?:sudo\s+)?(?:ba|z|k|da)?sh\b|\b(?:curl|wget)\b[^\n;|]{0,200}\s-o\s*/tmp/",
        ),
    },
    Rule {
        id: "cmdi-log4shell",
        category: Cmdi,
        score: 10,
        scopes: ALL,
        triggers: &[&["${"]],
        check: Check::Regex(
            r"\$\{\s*(?:jndi|lower|upper|env|sys|java|date|base64|main|ctx|::-)\s*:|\$\{[^}]{0,20}\$\{",
        ),
    },
    Rule {
        id: "cmdi-php-webshell",
        category: Cmdi,
        score: 10,
        scopes: ALL,
        triggers: &[&["<?php", "$_get", "$_post", "$_request", "$_cookie"]],
        check: Check::Regex(
            r"<\?php|\b(?:system|passthru|shell_exec|exec|popen|proc_open|eval|assert)\s*\(\s*\$_(?:get|post|request|cookie)",
        ),
    },
    Rule {
        id: "cmdi-code-exec",
        category: Cmdi,
        score: 6,
        scopes: ALL,
        triggers: &[&["os.system", "os.popen", "subprocess", "__import__"]],
        check: Check::Regex(r"\bos\.(?:system|popen)\s*\(|\bsubprocess\.\w+\s*\(|__import__\s*\("),
    },
    Rule {
        id: "cmdi-leading-separator",
        category: Cmdi,
        score: 6,
        scopes: ALL,
        triggers: &[SEPARATORS],
        check: Check::Unfolded(r"(?i)^\s*(?:;|\|\|?|&&?)\s*[a-z/{$]"),
    },
    Rule {
        id: "cmdi-powershell",
        category: Cmdi,
        score: 10,
        scopes: ALL,
        triggers: &[&[
            "iex",
            "downloadstring",
            "invoke-expression",
            "net.webclient",
            "-enc",
        ]],
        check: Check::Regex(
            r"\biex\s*\(|downloadstring\s*\(|invoke-expression\b|new-object\s+net\.webclient|\s-enc(?:odedcommand)?\s+[a-z0-9+/=]{8,}",
        ),
    },
    // ------------------------------------------------------------------ scanners
    Rule {
        id: "scanner-user-agent",
        category: Scanner,
        score: 10,
        scopes: scope::HEADER,
        triggers: &[&[
            "sqlmap",
            "nikto",
            "nmap",
            "masscan",
            "acunetix",
            "nessus",
            "wpscan",
            "dirbuster",
            "gobuster",
            "nuclei",
            "zgrab",
            "w3af",
            "havij",
            "openvas",
            "ffuf",
            "fuzz faster",
            "feroxbuster",
            "wfuzz",
            "arachni",
            "jorgee",
            "zmeu",
            "morfeus",
            "commix",
            "netsparker",
            "paros",
            "zap",
            "whatweb",
            "fimap",
            "blackwidow",
            "xsser",
            "sqlninja",
            "bsqlbf",
            "jaeles",
            "dirb",
            "skipfish",
            "webinspect",
            "appscan",
            "wapiti",
            "xsstrike",
            "uniscan",
            "nsauditor",
            "burp",
            "metasploit",
        ]],
        check: Check::Regex(
            r"\b(?:sqlmap|nikto|nmap|masscan|acunetix|nessus|wpscan|dirbuster|gobuster|nuclei|zgrab|w3af|havij|openvas|ffuf|feroxbuster|wfuzz|arachni|jorgee|zmeu|morfeus|commix|netsparker|paros|owasp[_ ]zap|zaproxy|whatweb|fimap|blackwidow|xsser|sqlninja|bsqlbf|jaeles|dirb|skipfish|webinspect|appscan|wapiti|xsstrike|uniscan|nsauditor|burpsuite|burp collaborator|metasploit)\b|fuzz faster u fool",
        ),
    },
    Rule {
        id: "scanner-oob-host",
        category: Scanner,
        score: 10,
        scopes: ALL,
        triggers: &[&[
            "burpcollaborator",
            "oastify",
            "oast.",
            "interact.sh",
            "interactsh",
            "dnslog.cn",
            "requestbin",
            "canarytokens",
            "ceye.io",
            "pingb.in",
            "bxss.me",
            "xss.ht",
        ]],
        check: Check::Regex(
            r"burpcollaborator\.net|oastify\.com|\boast\.(?:fun|pro|live|site|online|me)\b|\binteract\.sh\b|interactsh|dnslog\.cn|requestbin\.(?:net|com)|canarytokens\.com|ceye\.io|pingb\.in|bxss\.me|xss\.ht",
        ),
    },
];

/// `or`/`||` with the same operand on both sides of `=` (`' or 'a'='a`, `1 or 1=1`).
fn score_equal_operands(re: &Regex, text: &str, _scope: u8) -> u32 {
    if equal_operands(re, text) { 10 } else { 0 }
}

/// `and` with equal operands is a blind-injection probe, but also ordinary logic: medium.
fn score_equal_operands_and(re: &Regex, text: &str, _scope: u8) -> u32 {
    if equal_operands(re, text) { 6 } else { 0 }
}

fn equal_operands(re: &Regex, text: &str) -> bool {
    re.captures_iter(text)
        .any(|c| c.get(1).map(|m| m.as_str()) == c.get(2).map(|m| m.as_str()))
}

/// `../` sequences. In the path any dot-dot segment is an attack (clients resolve them before
/// sending). Elsewhere: two or more in a value that is a bare path (no spaces) is an attack; in
/// prose (code snippets with relative imports) they only add up.
fn score_dot_dot(re: &Regex, text: &str, scope: u8) -> u32 {
    let count = re.find_iter(text).count();
    if count == 0 {
        return 0;
    }
    if scope == scope::PATH {
        // Only whole dot-dot segments (`..`, `....`, `..;x`): `/v1../x` is a name.
        let dot_segment = text.split(['/', '\\']).any(|seg| {
            let head = seg.split(';').next().unwrap_or(seg);
            head.len() >= 2 && head.bytes().all(|b| b == b'.')
        });
        return if dot_segment { 10 } else { 4 };
    }
    let bare = !text.contains([' ', '\n']);
    match (bare, count) {
        (true, 2..) => 10,
        (true, 1) if text.trim_start_matches(['/', '\\']).starts_with("..") => 5,
        (true, _) => 4,
        (false, 3..) => 6,
        (false, _) => 3,
    }
}

/// A well-known sensitive file: an attack when the value is a bare path, a medium signal when it
/// is mentioned in prose ("how do I edit /etc/hosts?").
fn score_sensitive_file(re: &Regex, text: &str, _scope: u8) -> u32 {
    if !re.is_match(text) {
        0
    } else if text.trim().contains([' ', '\n']) {
        6
    } else {
        10
    }
}

/// `` `cmd` `` or `$(cmd)`: an attack when it opens the value (possibly after one token, as in
/// `a$(id)`); in prose it is most often a markdown code span or a shell tutorial.
fn score_substitution(re: &Regex, text: &str, _scope: u8) -> u32 {
    let Some(m) = re.find(text) else {
        return 0;
    };
    let before = text[..m.start()].trim();
    if !before.contains([' ', '\n']) && before.len() <= 40 {
        10
    } else {
        5
    }
}
