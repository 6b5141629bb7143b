//! Feeds arbitrary bytes to `open` and `Roster::verify`, both as they come
//! (so the age layer sees them) and encrypted to the reader (so the envelope
//! parser behind age sees them). Neither may panic, whatever the input.
#![no_main]

use std::io::Write;
use std::sync::OnceLock;

use bridge_crypto::{Identity, MemberId, Roster, open};
use libfuzzer_sys::fuzz_target;

/// A fixed identity, published here and good for nothing else, so that a
/// crashing input found in one run reproduces in the next.
const READER: &str = "BRIDGE-IDENTITY-1:AGE-SECRET-KEY-1RSD8VZ8SGGSZ6WL3A3VC5RJDFXE52N6D6ZLX2XYZ2HCDZ2GV8NASSC3NV6:FXClgOxfyHArPDpSZsQjQEWOEs_JypTjQHfroIqP80k";

struct Fixture {
    reader: Identity,
    root: MemberId,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let reader = Identity::parse(READER).expect("the fixed fuzz identity parses");
        let root = reader.member_id().clone();
        Fixture { reader, root }
    })
}

/// `plaintext` age-encrypted to the reader, as any holder of its public
/// recipient could do.
fn encrypt_to_reader(plaintext: &[u8]) -> Vec<u8> {
    let recipient = fixture().reader.public().recipient().clone();
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
            .expect("one recipient");
    let mut out = Vec::new();
    let mut writer = encryptor.wrap_output(&mut out).expect("in memory");
    writer.write_all(plaintext).expect("in memory");
    writer.finish().expect("in memory");
    out
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let _ = open(&f.reader, data);
    let _ = open(&f.reader, &encrypt_to_reader(data));

    // Several roster files: the input split at each 0x1e byte, each piece
    // both raw and encrypted to the reader.
    let files: Vec<(String, Vec<u8>)> = data
        .split(|&b| b == b'\x1e')
        .take(8)
        .enumerate()
        .flat_map(|(i, piece)| {
            [
                (format!("raw-{i}"), piece.to_vec()),
                (format!("sealed-{i}"), encrypt_to_reader(piece)),
            ]
        })
        .collect();
    let _ = Roster::verify(&files, &f.reader, "fuzz", &f.root);
});
