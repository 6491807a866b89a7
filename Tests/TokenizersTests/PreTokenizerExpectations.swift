// Expected words from Python's `regex` module running the Hugging Face patterns
// (the regexes are in Sources/Tokenizers/PreTokenizer.swift).
let preTokenizerTexts: [String] = [
    "Hello world", "I'LL go, it's 1234567 ok", "a  \t b\n\n  c \r\n", "x=1;y=22;\n\tprint(x+y)   ", "  \n  leading",
    "(parens)\n\n", "Привет 日本語 123abc",
]
let expectedWords: [String: [[String]]] = [
    "gpt2": [
        ["Hello", " world"],
        ["I", "'", "LL", " go", ",", " it", "'s", " 1234567", " ok"],
        ["a", "  \t", " b", "\n\n ", " c", " \r\n"],
        ["x", "=", "1", ";", "y", "=", "22", ";", "\n", "\t", "print", "(", "x", "+", "y", ")", "   "],
        ["  \n ", " leading"],
        ["(", "parens", ")", "\n\n"],
        ["Привет", " 日本語", " 123", "abc"],
    ],
    "llama3": [
        ["Hello", " world"],
        ["I", "'LL", " go", ",", " it", "'s", " ", "123", "456", "7", " ok"],
        ["a", "  \t", " b", "\n\n", " ", " c", " \r\n"],
        ["x", "=", "1", ";y", "=", "22", ";\n", "\tprint", "(x", "+y", ")", "   "],
        ["  \n", " ", " leading"],
        ["(parens", ")\n\n"],
        ["Привет", " 日本語", " ", "123", "abc"],
    ],
    "qwen2": [
        ["Hello", " world"],
        ["I", "'LL", " go", ",", " it", "'s", " ", "1", "2", "3", "4", "5", "6", "7", " ok"],
        ["a", "  \t", " b", "\n\n", " ", " c", " \r\n"],
        ["x", "=", "1", ";y", "=", "2", "2", ";\n", "\tprint", "(x", "+y", ")", "   "],
        ["  \n", " ", " leading"],
        ["(parens", ")\n\n"],
        ["Привет", " 日本語", " ", "1", "2", "3", "abc"],
    ],
]
