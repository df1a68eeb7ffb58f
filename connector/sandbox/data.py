"""Reference data of Kabupaten Mahakam Ulu for the sandbox (instansi 6411)."""

from __future__ import annotations

INSTANSI = 6411

# (id, name, parent, active): Mahulu's OPD as LAPOR! units.
UNITS: list[tuple[int, str, int | None, bool]] = [
    (6411001, "Dinas Kependudukan dan Pencatatan Sipil", None, True),
    (6411002, "Dinas Pendidikan dan Kebudayaan", None, True),
    (6411003, "Dinas Kesehatan, Pengendalian Penduduk dan Keluarga Berencana", None, True),
    (6411004, "RS Pratama Nawacita Datah Dawai", 6411003, True),
    (6411005, "Dinas Pekerjaan Umum dan Penataan Ruang", None, True),
    (6411006, "Dinas Perhubungan", None, True),
    (6411007, "Dinas Sosial", None, True),
    (6411008, "Dinas Pemberdayaan Masyarakat dan Kampung", None, True),
    (6411009, "Dinas Lingkungan Hidup", None, True),
    (6411010, "Dinas Komunikasi, Informatika, Statistik dan Persandian", None, True),
    (6411011, "Dinas Pertanian dan Ketahanan Pangan", None, True),
    (6411012, "Dinas Perumahan Rakyat dan Kawasan Permukiman", None, True),
    (6411013, "Dinas Penanaman Modal dan Pelayanan Terpadu Satu Pintu", None, True),
    (6411014, "Badan Penanggulangan Bencana Daerah", None, True),
    (6411015, "Satuan Polisi Pamong Praja", None, True),
    (6411016, "Badan Kepegawaian dan Pengembangan Sumber Daya Manusia", None, True),
    (6411017, "Badan Pengelolaan Keuangan dan Aset Daerah", None, True),
    (6411018, "Inspektorat Daerah", None, True),
    (6411019, "Sekretariat Daerah", None, True),
    (6411021, "Kecamatan Long Bagun", 6411019, True),
    (6411022, "Kecamatan Long Hubung", 6411019, True),
    (6411023, "Kecamatan Laham", 6411019, True),
    (6411024, "Kecamatan Long Apari", 6411019, True),
    (6411025, "Kecamatan Long Pahangai", 6411019, True),
    (6411026, "Dinas Kepemudaan, Olahraga dan Pariwisata", None, True),
    (6411027, "Badan Pendapatan Daerah", None, True),
    (6411028, "RS Pratama Gerbang Sehat Mahulu", 6411003, True),
    (6411099, "Kantor Pengolahan Data Elektronik (lama)", None, False),
]

# Units of other instansi, for re-dispositions out of Mahulu.
FOREIGN_UNITS: list[tuple[int, str, int]] = [
    (6400103, "Dinas Kesehatan Provinsi Kalimantan Timur", 64),
    (6400105, "Dinas PUPR dan Perumahan Rakyat Provinsi Kalimantan Timur", 64),
    (6407005, "Dinas Pekerjaan Umum Kabupaten Kutai Barat", 6407),
]

KECAMATAN: dict[str, list[str]] = {
    "Long Bagun": [
        "Ujoh Bilang",
        "Long Bagun Ulu",
        "Long Bagun Ilir",
        "Long Melaham",
        "Batoq Kelo",
        "Long Merah",
        "Rukun Damai",
        "Mamahak Besar",
        "Long Hurai",
        "Batu Majang",
    ],
    "Long Hubung": [
        "Long Hubung",
        "Lutan",
        "Datah Bilang Ulu",
        "Datah Bilang Ilir",
        "Datah Bilang Baru",
        "Long Hubung Ulu",
        "Memahak Teboq",
        "Memahak Ulu",
        "Matalibaq",
        "Sirau",
        "Wana Pariq",
        "Tri Pariq Makmur",
    ],
    "Laham": ["Laham", "Long Gelawang", "Muara Ratah", "Danum Paroy", "Nyaribungan"],
    "Long Apari": [
        "Long Apari",
        "Tiong Ohang",
        "Tiong Bu'u",
        "Long Penaneh I",
        "Long Penaneh II",
        "Long Penaneh III",
        "Long Kerioq",
        "Noha Tivab",
        "Noha Boan",
        "Naha Silat",
    ],
    "Long Pahangai": [
        "Long Pahangai I",
        "Long Pahangai II",
        "Long Lunuk",
        "Long Lunuk Baru",
        "Naha Aruq",
        "Long Isun",
        "Datah Naha",
        "Long Tuyoq",
        "Lirung Ubing",
        "Delang Kerohong",
        "Liu Mulang",
        "Long Pakaq",
        "Long Pakaq Baru",
    ],
}

KECAMATAN_UNIT = {
    "Long Bagun": 6411021,
    "Long Hubung": 6411022,
    "Laham": 6411023,
    "Long Apari": 6411024,
    "Long Pahangai": 6411025,
}

# (id, name, parent): the topic tree.
CATEGORIES: list[tuple[int, str, int | None]] = [
    (1, "Kesehatan", None),
    (101, "Pelayanan Puskesmas", 1),
    (102, "Rumah Sakit", 1),
    (103, "Jaminan Kesehatan", 1),
    (104, "RS Pratama Gerbang Sehat Mahulu", 1),
    (2, "Pendidikan", None),
    (201, "Sekolah Dasar dan Menengah", 2),
    (202, "Guru", 2),
    (203, "Beasiswa", 2),
    (3, "Infrastruktur", None),
    (301, "Jalan dan Jembatan", 3),
    (302, "Dermaga", 3),
    (303, "Air Bersih", 3),
    (304, "Listrik Kampung", 3),
    (4, "Administrasi Kependudukan", None),
    (401, "KTP Elektronik", 4),
    (402, "Kartu Keluarga", 4),
    (403, "Akta Kelahiran", 4),
    (5, "Sosial", None),
    (501, "Bantuan Sosial", 5),
    (502, "Program Keluarga Harapan", 5),
    (6, "Lingkungan Hidup", None),
    (601, "Sampah", 6),
    (602, "Banjir dan Longsor", 6),
    (7, "Pemerintahan Kampung", None),
    (701, "Dana Kampung", 7),
    (702, "Pelayanan Kantor Kampung", 7),
    (8, "Perhubungan", None),
    (801, "Angkutan Sungai", 8),
    (802, "Bandara Datah Dawai", 8),
    (9, "Komunikasi dan Informatika", None),
    (901, "Sinyal dan Internet", 9),
    (10, "Kepemudaan, Olahraga dan Pariwisata", None),
    (1001, "Objek Wisata", 10),
    (1002, "Sarana Olahraga", 10),
    (11, "Pajak dan Retribusi Daerah", None),
    (1101, "Pajak Daerah", 11),
]

# Leaf category -> the unit LAPOR! usually disposes it to.
CATEGORY_UNIT: dict[int, int] = {
    101: 6411003,
    102: 6411004,
    103: 6411003,
    201: 6411002,
    202: 6411002,
    203: 6411002,
    301: 6411005,
    302: 6411006,
    303: 6411005,
    304: 6411012,
    401: 6411001,
    402: 6411001,
    403: 6411001,
    501: 6411007,
    502: 6411007,
    601: 6411009,
    602: 6411014,
    701: 6411008,
    702: 6411008,
    801: 6411006,
    802: 6411006,
    901: 6411010,
    104: 6411028,
    1001: 6411026,
    1002: 6411026,
    1101: 6411027,
}

# Complaint texts per leaf category: (title, body); {kampung} and {kecamatan} are filled in.
TEXTS: dict[int, list[tuple[str, str]]] = {
    101: [
        (
            "Puskesmas {kampung} sering tutup",
            "Puskesmas di {kampung}, Kecamatan {kecamatan}, sudah tiga minggu sering tutup pada "
            "jam pelayanan. Warga harus menunggu di dermaga untuk ke Ujoh Bilang.",
        )
    ],
    102: [
        (
            "Antrean panjang di RS Pratama Nawacita Datah Dawai",
            "Saya membawa anak berobat dari {kampung} dan menunggu lebih dari lima jam. Mohon "
            "ditambah petugas pendaftaran.",
        )
    ],
    103: [
        (
            "Kartu BPJS belum aktif",
            "Kartu jaminan kesehatan keluarga kami di {kampung} belum aktif padahal sudah "
            "didaftarkan sejak tiga bulan lalu.",
        )
    ],
    104: [
        (
            "Dokter spesialis jarang ada di RS Pratama Gerbang Sehat Mahulu",
            "Kami dari {kampung} sudah dua kali datang ke RS Pratama Gerbang Sehat Mahulu, "
            "dokter spesialis tidak ada di tempat dan pasien dirujuk ke Samarinda.",
        )
    ],
    201: [
        (
            "Atap SD di {kampung} bocor",
            "Atap ruang kelas SD di {kampung} bocor sehingga murid belajar di lantai basah "
            "saat hujan.",
        )
    ],
    202: [
        (
            "Guru jarang hadir di {kampung}",
            "Guru kelas rendah di {kampung} jarang hadir, anak-anak pulang sebelum jam sembilan.",
        )
    ],
    203: [
        (
            "Pencairan beasiswa terlambat",
            "Beasiswa mahasiswa dari Kecamatan {kecamatan} belum cair untuk semester ini.",
        )
    ],
    301: [
        (
            "Jalan antar kampung rusak parah",
            "Jalan dari {kampung} ke ibu kota kecamatan {kecamatan} berlubang dan tidak bisa "
            "dilalui motor saat hujan.",
        )
    ],
    302: [
        (
            "Dermaga {kampung} ambruk",
            "Papan dermaga di {kampung} lapuk dan sebagian ambruk, berbahaya untuk penumpang "
            "longboat.",
        )
    ],
    303: [
        (
            "Air bersih tidak mengalir",
            "Sudah dua minggu air bersih di {kampung} tidak mengalir. Warga mengambil air sungai "
            "yang keruh.",
        )
    ],
    304: [
        (
            "Listrik kampung padam setiap malam",
            "Listrik di {kampung} padam hampir setiap malam sejak genset rusak.",
        )
    ],
    401: [
        (
            "KTP elektronik belum jadi",
            "Saya merekam KTP elektronik di Kecamatan {kecamatan} empat bulan lalu tetapi belum "
            "juga dicetak.",
        )
    ],
    402: [
        (
            "Perubahan Kartu Keluarga lama",
            "Pengurusan perubahan Kartu Keluarga dari {kampung} sudah satu bulan belum selesai.",
        )
    ],
    403: [
        (
            "Akta kelahiran anak belum terbit",
            "Akta kelahiran anak kami yang lahir di {kampung} belum terbit.",
        )
    ],
    501: [
        (
            "Bantuan sosial tidak tepat sasaran",
            "Ada keluarga mampu di {kampung} yang menerima bantuan, sementara lansia tidak.",
        )
    ],
    502: [
        (
            "PKH tidak cair",
            "Bantuan PKH ibu-ibu di {kampung} tidak cair pada tahap ini tanpa penjelasan.",
        )
    ],
    601: [
        (
            "Sampah menumpuk di tepi sungai",
            "Sampah menumpuk di tepi Sungai Mahakam dekat {kampung} dan berbau.",
        )
    ],
    602: [
        (
            "Longsor menutup jalan",
            "Longsor menutup jalan di dekat {kampung}, Kecamatan {kecamatan}.",
        )
    ],
    701: [
        (
            "Penggunaan dana kampung tidak jelas",
            "Warga {kampung} tidak mendapat penjelasan tentang penggunaan dana kampung tahun ini.",
        )
    ],
    702: [
        (
            "Kantor kampung sering kosong",
            "Kantor kampung {kampung} sering kosong sehingga surat pengantar sulit diurus.",
        )
    ],
    801: [
        (
            "Tarif longboat naik tanpa pemberitahuan",
            "Tarif longboat dari {kampung} ke Ujoh Bilang naik tanpa pemberitahuan resmi.",
        )
    ],
    802: [
        (
            "Jadwal penerbangan Datah Dawai tidak pasti",
            "Penerbangan perintis dari Datah Dawai sering batal tanpa informasi kepada penumpang.",
        )
    ],
    1001: [
        (
            "Jalan ke air terjun di {kampung} tidak terawat",
            "Jalan setapak menuju objek wisata air terjun dekat {kampung} tertutup semak dan "
            "jembatan kayunya patah; wisatawan tidak bisa lewat.",
        )
    ],
    1002: [
        (
            "Lapangan olahraga {kampung} rusak",
            "Lapangan voli dan sepak bola di {kampung}, Kecamatan {kecamatan}, berlubang dan "
            "tiang gawangnya roboh sejak banjir.",
        )
    ],
    1101: [
        (
            "Tagihan PBB tidak sesuai",
            "Tagihan Pajak Bumi dan Bangunan rumah kami di {kampung} naik dua kali lipat tanpa "
            "penjelasan dari Bapenda.",
        )
    ],
    901: [
        (
            "Sinyal internet hilang",
            "Sinyal internet di {kampung} hilang sejak menara rusak, sekolah tidak bisa "
            "ujian daring.",
        )
    ],
}

FIRST_NAMES = [
    "Yohanes",
    "Maria",
    "Petrus",
    "Agustina",
    "Stefanus",
    "Rosalia",
    "Benediktus",
    "Siti",
    "Ahmad",
    "Dewi",
    "Paulus",
    "Theresia",
    "Yakobus",
    "Lusia",
    "Hendrikus",
    "Margaretha",
]
LAST_NAMES = [
    "Hanyeq",
    "Bulan",
    "Lung",
    "Ding",
    "Ajang",
    "Hudoq",
    "Ibau",
    "Aminah",
    "Ngau",
    "Ubung",
    "Lawing",
    "Hajang",
    "Irang",
    "Bang",
    "Huvang",
    "Kueng",
]

REPORTER_REPLIES = [
    "Terima kasih, kami tunggu tindak lanjutnya.",
    "Sampai hari ini belum ada petugas yang datang ke kampung kami.",
    "Mohon dikabari jadwal perbaikannya.",
    "Masalahnya muncul lagi minggu ini.",
]
OBJECTIONS = [
    "Saya keberatan, masalah ini belum selesai di lapangan.",
    "Belum ada perbaikan, mohon laporan dibuka kembali.",
]
ADMIN_NOTES = {
    "redispose": "Laporan didisposisikan ulang ke unit yang berwenang.",
    "archive": "Laporan diarsipkan: duplikat dari laporan lain.",
    "close": "Laporan ditutup: tidak ada keberatan dalam 10 hari kerja.",
}
