//! The names the demo's fixtures are drawn from: football leagues and their clubs, tennis
//! tournaments and players, racecourses and runners.

/// Leagues with their clubs; a fixture pairs two clubs of one league.
pub const FOOTBALL_LEAGUES: [(&str, &[&str]); 4] = [
    (
        "Premier League",
        &[
            "Arsenal",
            "Tottenham",
            "Liverpool",
            "Everton",
            "Chelsea",
            "Manchester City",
            "Manchester United",
            "Newcastle",
            "Aston Villa",
            "Brighton",
        ],
    ),
    (
        "La Liga",
        &["Real Madrid", "Barcelona", "Atletico Madrid", "Sevilla", "Real Sociedad", "Villarreal", "Athletic Club"],
    ),
    ("Serie A", &["Inter", "Milan", "Juventus", "Napoli", "Roma", "Lazio", "Atalanta", "Fiorentina"]),
    ("Bundesliga", &["Bayern Munich", "Borussia Dortmund", "RB Leipzig", "Bayer Leverkusen", "Stuttgart", "Freiburg"]),
];
pub const TENNIS_TOURNAMENTS: [&str; 4] = ["ATP Finals", "Wimbledon", "Roland Garros", "US Open"];
pub const TENNIS_PLAYERS: [&str; 10] =
    ["Sinner", "Alcaraz", "Djokovic", "Zverev", "Medvedev", "Fritz", "Rune", "de Minaur", "Ruud", "Draper"];
pub const RACECOURSES: [&str; 8] =
    ["Cheltenham", "Ascot", "Aintree", "Newmarket", "Epsom", "York", "Leopardstown", "Goodwood"];
pub const HORSES: [&str; 24] = [
    "Galopin",
    "Constitution Hill",
    "State Man",
    "Lossiemouth",
    "Impaire",
    "Brighterdaysahead",
    "Ballyburn",
    "Jonbon",
    "Sir Gino",
    "Golden Ace",
    "Fact To File",
    "Inothewayurthinkin",
    "Marine Nationale",
    "El Fabiolo",
    "Gaelic Warrior",
    "Majborough",
    "Kopek Des Bordes",
    "Final Demand",
    "Jango Baie",
    "Bambino Fever",
    "Irish Panther",
    "Salvator Mundi",
    "Anzadam",
    "Poniros",
];
