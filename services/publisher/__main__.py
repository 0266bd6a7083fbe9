from services.publisher.cli import main

main()
