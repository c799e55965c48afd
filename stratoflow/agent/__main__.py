import sys

from stratoflow.agent.server import main

sys.exit(main())
