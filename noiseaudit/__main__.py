from noiseaudit.cli import main

main()
