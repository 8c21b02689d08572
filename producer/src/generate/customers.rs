//! Customer names and emails: a pure function of the customer number, mixing cultures and
//! scripts (see the parent module).

use std::fmt::Write as _;

/// A name part and its lower-case ASCII transliteration for the email.
type Part = (&'static str, &'static str);

struct Culture {
    given: &'static [Part],
    family: &'static [Part],
    /// Family name first (`山田 太郎`).
    family_first: bool,
}

const WESTERN_GIVEN: &[Part] = &[
    ("José", "jose"),
    ("Zoë", "zoe"),
    ("Łukasz", "lukasz"),
    ("Anna", "anna"),
    ("Björn", "bjorn"),
    ("François", "francois"),
    ("Søren", "soren"),
    ("Mary", "mary"),
    ("John", "john"),
    ("Emma", "emma"),
    ("Liam", "liam"),
    ("Olivia", "olivia"),
    ("Noah", "noah"),
    ("Chloé", "chloe"),
    ("Ramón", "ramon"),
    ("Małgorzata", "malgorzata"),
    ("Jürgen", "jurgen"),
    ("Siobhán", "siobhan"),
    ("Seán", "sean"),
    ("Ingrid", "ingrid"),
    ("Mohammed", "mohammed"),
    ("Fatima", "fatima"),
    ("Priya", "priya"),
    ("Hélène", "helene"),
    ("Dmitri", "dmitri"),
    ("Agnieszka", "agnieszka"),
    ("Çağla", "cagla"),
    ("Øystein", "oystein"),
    ("Renée", "renee"),
    ("Michael", "michael"),
    ("Sarah", "sarah"),
    ("David", "david"),
    ("Laura", "laura"),
    ("Sofía", "sofia"),
    ("Robert \"Bob\"", "bob"),
];

const WESTERN_FAMILY: &[Part] = &[
    ("Álvarez", "alvarez"),
    ("Müller", "muller"),
    ("Wójcik", "wojcik"),
    ("O'Brien", "obrien"),
    ("Smith, Jr.", "smith"),
    ("García", "garcia"),
    ("Núñez", "nunez"),
    ("Schröder", "schroder"),
    ("Dvořák", "dvorak"),
    ("Kowalski", "kowalski"),
    ("Johansson", "johansson"),
    ("Østergaard", "ostergaard"),
    ("Lefèvre", "lefevre"),
    ("D'Angelo", "dangelo"),
    ("McAllister", "mcallister"),
    ("van der Berg", "vanderberg"),
    ("Nguyễn", "nguyen"),
    ("Yılmaz", "yilmaz"),
    ("Brown", "brown"),
    ("Johnson", "johnson"),
    ("Williams", "williams"),
    ("Taylor", "taylor"),
    ("Martin", "martin"),
    ("Rossi", "rossi"),
    ("Novák", "novak"),
    ("Horváth", "horvath"),
    ("Sánchez", "sanchez"),
    ("Gonçalves", "goncalves"),
    ("Patel", "patel"),
    ("Cohen", "cohen"),
    ("Ivanov", "ivanov"),
    ("Lindqvist", "lindqvist"),
    ("Nowak", "nowak"),
    ("Jones", "jones"),
];

const CULTURES: &[Culture] = &[
    Culture {
        given: WESTERN_GIVEN,
        family: WESTERN_FAMILY,
        family_first: false,
    },
    Culture {
        given: &[
            ("太郎", "taro"),
            ("花子", "hanako"),
            ("健", "ken"),
            ("美咲", "misaki"),
            ("翔太", "shota"),
        ],
        family: &[
            ("山田", "yamada"),
            ("佐藤", "sato"),
            ("鈴木", "suzuki"),
            ("田中", "tanaka"),
            ("高橋", "takahashi"),
        ],
        family_first: true,
    },
    Culture {
        given: &[
            ("伟", "wei"),
            ("芳", "fang"),
            ("秀英", "xiuying"),
            ("明", "ming"),
        ],
        family: &[
            ("王", "wang"),
            ("李", "li"),
            ("张", "zhang"),
            ("陈", "chen"),
        ],
        family_first: true,
    },
    Culture {
        given: &[("민준", "minjun"), ("서연", "seoyeon"), ("지호", "jiho")],
        family: &[("김", "kim"), ("이", "lee"), ("박", "park")],
        family_first: true,
    },
];

/// SplitMix64: a fixed, seed-independent scramble of the customer number.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Writes customer `n`'s display name and email into the (cleared) buffers.
pub(super) fn customer(n: u64, name: &mut String, email: &mut String) {
    let h = mix(n);
    // 85 % western names, 5 % each Japanese, Chinese, Korean.
    let culture = match h % 100 {
        0..85 => &CULTURES[0],
        85..90 => &CULTURES[1],
        90..95 => &CULTURES[2],
        _ => &CULTURES[3],
    };
    let h = h / 100;
    let given = culture.given[(h % culture.given.len() as u64) as usize];
    let h = h / culture.given.len() as u64;
    let family = culture.family[(h % culture.family.len() as u64) as usize];

    name.clear();
    let (first, second) = if culture.family_first {
        (family.0, given.0)
    } else {
        (given.0, family.0)
    };
    name.push_str(first);
    name.push(' ');
    name.push_str(second);

    email.clear();
    write!(email, "{}.{}.{n}@example.com", given.1, family.1).expect("write to String");
}
