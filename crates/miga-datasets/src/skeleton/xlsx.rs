//! The MiGA `<ID>_openpose.xlsx` skeleton tables: first worksheet, one row per frame (row r is
//! frame r), 411 columns: the 137 OpenPose points (body 25, face 70, left hand 21, right hand
//! 21) as x, y, confidence triples; no header and no frame column. A frame without a person is
//! a row of zeros (or empty cells). Reading also accepts a header row of text and a leading
//! frame-number column (412 columns).

use std::io::Cursor;
use std::path::Path;

use calamine::{Data, Reader, Xlsx};

use super::sequence::{OPENPOSE_POINTS, Skeleton};
use crate::error::read_file;
use crate::io::write_atomic;
use crate::{Error, Result};

const COLUMNS: usize = OPENPOSE_POINTS * 3;
const MAX_FRAMES: usize = 5_000_000;

/// Reads a MiGA skeleton table (see the module documentation).
pub fn read_skeleton_xlsx(path: impl AsRef<Path>) -> Result<Skeleton> {
    let path = path.as_ref();
    parse_skeleton_xlsx(&read_file(path)?, path)
}

/// Parses the bytes of a MiGA skeleton table; `path` names it in errors.
pub fn parse_skeleton_xlsx(bytes: &[u8], path: &Path) -> Result<Skeleton> {
    crate::error::guarded(path, "workbook", || parse_unguarded(bytes, path))
}

fn parse_unguarded(bytes: &[u8], path: &Path) -> Result<Skeleton> {
    let mut workbook = Xlsx::new(Cursor::new(bytes))
        .map_err(|e| Error::format(path, "workbook", e.to_string()))?;
    let range = workbook
        .worksheet_range_at(0)
        .ok_or_else(|| Error::format(path, "workbook", "no worksheet"))?
        .map_err(|e| Error::format(path, "first worksheet", e.to_string()))?;
    let Some((first_row, first_column)) = range.start() else {
        return Err(Error::request(path, "the skeleton table is empty"));
    };
    let (first_row, first_column) = (first_row as usize, first_column as usize);
    let (height, width) = range.get_size();
    let header = range
        .rows()
        .next()
        .is_some_and(|row| row.iter().any(|c| matches!(c, Data::String(_))));
    // Sheet row of frame 0: calamine trims leading empty rows, which are frames without people.
    let base = if header { first_row + 1 } else { 0 };
    let offset = match first_column + width {
        n if n <= COLUMNS => 0,
        n if n == COLUMNS + 1 => 1,
        n => {
            return Err(Error::format(
                path,
                "first worksheet",
                format!("{n} columns, expected {COLUMNS} (137 points x 3)"),
            ));
        }
    };
    // A corrupt file can claim any row: refuse more frames than 55 hours of video at 25 fps.
    if first_row + height > MAX_FRAMES {
        return Err(Error::format(
            path,
            format!("row {}", first_row + height),
            format!("more than {MAX_FRAMES} frames"),
        ));
    }
    let mut skeleton = Skeleton::empty(first_row + height - base, OPENPOSE_POINTS);
    for (i, row) in range.rows().enumerate().skip(usize::from(header)) {
        let sheet_row = first_row + i;
        let out = skeleton.frame_mut(sheet_row - base);
        for (j, cell) in row.iter().enumerate() {
            let Some(column) = (first_column + j).checked_sub(offset) else {
                continue;
            };
            out[column] = match cell {
                Data::Empty => 0.0,
                Data::Float(v) if v.is_finite() => *v as f32,
                Data::Int(v) => *v as f32,
                other => {
                    return Err(Error::format(
                        path,
                        format!(
                            "row {}, column {}",
                            sheet_row + 1,
                            column_name(first_column + j)
                        ),
                        format!("`{other}` is not a finite number"),
                    ));
                }
            };
        }
    }
    Ok(skeleton)
}

/// Spreadsheet column letters of a 0-based column index (0 -> A, 26 -> AA).
fn column_name(mut index: usize) -> String {
    let mut name = Vec::new();
    loop {
        name.push(b'A' + (index % 26) as u8);
        if index < 26 {
            break;
        }
        index = index / 26 - 1;
    }
    name.reverse();
    String::from_utf8(name).unwrap_or_default()
}

/// Writes a 137-point sequence as a MiGA skeleton table (atomically).
pub fn write_skeleton_xlsx(path: impl AsRef<Path>, skeleton: &Skeleton) -> Result<()> {
    let path = path.as_ref();
    if skeleton.points() != OPENPOSE_POINTS {
        return Err(Error::request(
            path,
            format!(
                "a skeleton table holds {OPENPOSE_POINTS} points, not {}",
                skeleton.points()
            ),
        ));
    }
    let fail = |e: rust_xlsxwriter::XlsxError| Error::format(path, "workbook", e.to_string());
    let mut workbook = rust_xlsxwriter::Workbook::new();
    // A fixed creation time, so that the same skeleton gives the same bytes.
    let created = rust_xlsxwriter::ExcelDateTime::from_ymd(2020, 8, 31).map_err(fail)?;
    workbook.set_properties(&rust_xlsxwriter::DocProperties::new().set_creation_datetime(&created));
    let sheet = workbook.add_worksheet();
    for t in 0..skeleton.frames() {
        for (column, &value) in skeleton.frame(t).iter().enumerate() {
            sheet
                .write_number(t as u32, column as u16, f64::from(value))
                .map_err(fail)?;
        }
    }
    let bytes = workbook.save_to_buffer().map_err(fail)?;
    write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::scratch_dir;

    #[test]
    fn tables_round_trip() {
        let data: Vec<f32> = (0..3 * COLUMNS)
            .map(|i| if i % 7 == 0 { 0.0 } else { i as f32 * 0.5 })
            .collect();
        let skeleton = Skeleton::new(3, OPENPOSE_POINTS, data).unwrap();
        let path = scratch_dir().join("0001_openpose.xlsx");
        write_skeleton_xlsx(&path, &skeleton).unwrap();
        assert_eq!(read_skeleton_xlsx(&path).unwrap(), skeleton);
    }

    #[test]
    fn bad_tables_are_errors() {
        let dir = scratch_dir();
        let path = dir.join("bad.xlsx");
        std::fs::write(&path, b"PK\x03\x04 not really a zip").unwrap();
        assert!(
            read_skeleton_xlsx(&path)
                .unwrap_err()
                .to_string()
                .contains("bad.xlsx")
        );
        let narrow = Skeleton::new(1, 1, vec![1.0, 2.0, 3.0]).unwrap();
        assert!(write_skeleton_xlsx(dir.join("narrow.xlsx"), &narrow).is_err());
        let mut workbook = rust_xlsxwriter::Workbook::new();
        let sheet = workbook.add_worksheet();
        for c in 0..COLUMNS as u16 {
            sheet.write_number(0, c, 1.0).unwrap();
        }
        sheet.write_string(1, 5, "oops").unwrap();
        let text = dir.join("text.xlsx");
        std::fs::write(&text, workbook.save_to_buffer().unwrap()).unwrap();
        let message = read_skeleton_xlsx(&text).unwrap_err().to_string();
        assert!(message.contains("row 2, column F"), "{message}");
        assert_eq!(column_name(410), "OU");
    }

    /// Fuzzing found that calamine overflows (a panic in test builds) on a cell reference with
    /// a huge row number; the reader reports it as a format error instead.
    #[test]
    fn huge_cell_references_are_errors() {
        use std::io::{Read, Write};
        let dir = scratch_dir();
        let good = dir.join("good.xlsx");
        write_skeleton_xlsx(&good, &Skeleton::empty(1, OPENPOSE_POINTS)).unwrap();
        let mut archive = zip::ZipArchive::new(std::fs::File::open(&good).unwrap()).unwrap();
        let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for i in 0..archive.len() {
            let mut entry = archive.by_index(i).unwrap();
            let name = entry.name().unwrap().to_string();
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            if name.ends_with("sheet1.xml") {
                let text = String::from_utf8(content).unwrap().replacen(
                    "r=\"A1\"",
                    "r=\"A99999999999\"",
                    1,
                );
                content = text.into_bytes();
            }
            out.start_file(name, zip::write::SimpleFileOptions::default())
                .unwrap();
            out.write_all(&content).unwrap();
        }
        let bytes = out.finish().unwrap().into_inner();
        let message = parse_skeleton_xlsx(&bytes, Path::new("huge.xlsx"))
            .unwrap_err()
            .to_string();
        assert!(message.contains("huge.xlsx"), "{message}");
    }
}
